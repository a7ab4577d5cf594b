import { createRequire } from 'node:module';
import { Command, Option } from 'commander';
import { HASH_ALGORITHMS } from '@ketter/core';
import { auditVerifyCommand } from './commands/audit.js';
import { jobsListCommand, jobsShowCommand, type ListFlags } from './commands/jobs.js';
import { migrateCommand } from './commands/migrate.js';
import { planCommand, type PlanFlags } from './commands/plan.js';
import { recoverCommand } from './commands/recover.js';
import { transferCommand, type TransferFlags } from './commands/transfer.js';
import { createContext, type CommandContext, type GlobalOptions } from './context.js';
import type { CliIO } from './io.js';

function version(): string {
  try {
    return (createRequire(import.meta.url)('../package.json') as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

const STRATEGY = () => new Option('--strategy <strategy>', 'auto applies the policy; direct or zip force one').choices(['auto', 'direct', 'zip']).default('auto');
const SYMLINKS = () => new Option('--symlinks <policy>', 'symbolic links in the source tree: fail the job, or skip them').choices(['fail', 'skip']).default('fail');
const THRESHOLD_FILES = () => new Option('--zip-threshold-files <n>', `ZIP_FIRST above this many files (env KETTER_ZIP_THRESHOLD_FILES, default 1000)`);
const THRESHOLD_AVG = () => new Option('--zip-threshold-avg-size <bytes>', `…and only below this average file size (env KETTER_ZIP_THRESHOLD_AVG_SIZE_BYTES, default 4194304)`);

/**
 * Build the `ketter` command tree. Each action stores its exit status in `result`;
 * commander itself never exits the process.
 */
export function buildProgram(io: CliIO, result: { code: number }): Command {
  const program = new Command('ketter')
    .description('Verified, audited file transfers between local volumes, configured portals and SFTP hosts')
    .version(version(), '-V, --version')
    .option('--config <file>', 'config file (default ./ketter.yaml when present)')
    .option('--store <dir|url>', 'JSONL store directory or postgres:// URL (default: config store, $KETTER_HOME, ~/.ketter)')
    .configureOutput({
      writeOut: (text) => void io.stdout.write(text),
      writeErr: (text) => void io.stderr.write(text),
      // Errors are printed by main() in the one-line `ketter: [CODE] message` form.
      outputError: () => undefined,
    })
    .exitOverride()
    .addHelpText(
      'after',
      `
Locations: a local path, portal:path (from ketter.yaml) or sftp://user@host[:port]/path.
Exit codes: 0 success, 1 job failed, 2 invalid usage or input, 130 cancelled.

Examples:
  ketter transfer --from "/mnt/nexis/Session 01" --to /mnt/delivery/in
  ketter transfer --mode move --from nexis:projects/EP104 --to qc:incoming --json
  ketter plan --from nexis:projects/EP104
  ketter jobs list --status failed
  ketter audit verify`,
    );

  const run =
    <A extends unknown[]>(fn: (ctx: CommandContext, ...args: A) => Promise<number>) =>
    async (...args: A) => {
      const command = args[args.length - 1] as Command;
      const ctx = createContext(io, command.optsWithGlobals<GlobalOptions>());
      result.code = await fn(ctx, ...args);
    };

  program
    .command('transfer')
    .description('copy or move a file or folder into a destination folder, verified and recorded')
    .requiredOption('--from <location>', 'source: a local path, portal:path or sftp://user@host[:port]/path')
    .requiredOption('--to <location>', 'destination folder; the source lands at <to>/<basename of source>')
    .addOption(new Option('--mode <mode>', 'move deletes the source after a verified commit').choices(['copy', 'move']).default('copy'))
    .addOption(STRATEGY())
    .addOption(new Option('--hash <algorithm>', 'hash algorithm (default: config hash, else sha256)').choices([...HASH_ALGORITHMS]))
    .addOption(new Option('--on-conflict <policy>', 'when <to>/<name> exists: fail, or succeed without copying if identical').choices(['fail', 'skip-identical']).default('fail'))
    .addOption(SYMLINKS())
    .option('--concurrency <n>', 'files in flight at once (default: config concurrency, else 16 locally, 64 when an end is remote)')
    .addOption(THRESHOLD_FILES())
    .addOption(THRESHOLD_AVG())
    .option('--dry-run', 'scan, plan and preflight only: no writes, no job recorded')
    .option('--json', 'print one JSON object on stdout')
    .action(run((ctx, flags: TransferFlags) => transferCommand(flags, ctx)));

  program
    .command('plan')
    .description('scan a source and show the strategy decision and its inputs (no writes)')
    .requiredOption('--from <location>', 'source: a local path, portal:path or sftp://user@host[:port]/path')
    .addOption(STRATEGY())
    .addOption(SYMLINKS())
    .addOption(THRESHOLD_FILES())
    .addOption(THRESHOLD_AVG())
    .option('--json', 'print one JSON object on stdout')
    .action(run((ctx, flags: PlanFlags) => planCommand(flags, ctx)));

  const jobs = program.command('jobs').description('job history from the store');
  jobs
    .command('list')
    .description('recent jobs, most recent first')
    .option('--limit <n>', 'how many jobs (default 20)')
    .addOption(new Option('--mode <mode>').choices(['copy', 'move']))
    .addOption(new Option('--status <status>').choices(['created', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted']))
    .option('--strategy <strategy>', 'DIRECT or ZIP_FIRST')
    .option('--json', 'print one JSON object on stdout')
    .action(run((ctx, flags: ListFlags) => jobsListCommand(flags, ctx)));
  jobs
    .command('show')
    .description('one job: status, mode, paths, files, bytes, duration, strategy and every event')
    .argument('<id>', 'job id')
    .option('--json', 'print one JSON object on stdout')
    .action(run((ctx, id: string, flags: { json?: boolean }) => jobsShowCommand(id, flags, ctx)));

  program
    .command('audit')
    .description('audit trail checks')
    .command('verify')
    .description("check the audit trail's hash chain; exit 1 naming the first altered record")
    .option('--json', 'print one JSON object on stdout')
    .action(run((ctx, flags: { json?: boolean }) => auditVerifyCommand(flags, ctx)));

  program
    .command('recover')
    .description('mark jobs whose process died as interrupted and remove the staging and archives they left')
    .option('--keep-resumable', 'keep the staging of interrupted DIRECT folder jobs, so running the same transfer again resumes them')
    .option('--json', 'print one JSON object on stdout')
    .action(run((ctx, flags: { json?: boolean; keepResumable?: boolean }) => recoverCommand(flags, ctx)));

  program
    .command('migrate')
    .description('apply pending migrations to a PostgreSQL store (a JSONL store needs none)')
    .option('--json', 'print one JSON object on stdout')
    .action(run((ctx, flags: { json?: boolean }) => migrateCommand(flags, ctx)));

  return program;
}
