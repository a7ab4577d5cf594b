import type { CommandContext } from '../context.js';
import { ExitCode } from '../exit.js';
import { describeStore, migratePostgres } from '../store.js';

/** `ketter migrate`: apply pending migrations of a PostgreSQL store. */
export async function migrateCommand(flags: { json?: boolean }, ctx: CommandContext): Promise<number> {
  const target = ctx.store;
  if (target.kind !== 'postgres') {
    if (flags.json) ctx.out.json({ store: describeStore(target), kind: 'jsonl', migrated: false, applied: [] });
    else ctx.out.text(`nothing to migrate: the JSONL store at ${target.dir} needs no migrations\n`);
    return ExitCode.OK;
  }
  const result = await migratePostgres(target, ctx.io.cwd);
  const applied = appliedNames(result);
  if (flags.json) {
    ctx.out.json({ store: describeStore(target), kind: 'postgres', migrated: true, applied });
  } else if (applied.length === 0) {
    ctx.out.text(`${describeStore(target)}: schema up to date\n`);
  } else {
    ctx.out.text(`${describeStore(target)}: applied ${applied.length} migration(s)\n${applied.map((n) => `  ${n}\n`).join('')}`);
  }
  return ExitCode.OK;
}

// The store package reports applied migrations as names or as `{ name }` records; accept both.
function appliedNames(result: unknown): string[] {
  const list = Array.isArray(result) ? result : result && typeof result === 'object' && 'applied' in result ? (result as { applied: unknown }).applied : [];
  if (!Array.isArray(list)) return [];
  return list.map((item) => (typeof item === 'string' ? item : item && typeof item === 'object' && 'name' in item ? String((item as { name: unknown }).name) : String(item)));
}
