import { plan, scan, summarizePlan, type StrategyChoice, type SymlinkPolicy } from '@ketter/core';
import type { CommandContext } from '../context.js';
import { showEndpoint } from '../endpoints.js';
import { ExitCode } from '../exit.js';
import { formatBytes } from '../format.js';
import { PortalRegistry } from '../locations.js';
import { resolveThresholds, type ThresholdFlags } from '../settings.js';

export interface PlanFlags extends ThresholdFlags {
  from: string;
  strategy: StrategyChoice;
  symlinks: SymlinkPolicy;
  json?: boolean;
}

/** `ketter plan`: scan the source and show the strategy decision and its inputs; writes nothing. */
export async function planCommand(flags: PlanFlags, ctx: CommandContext): Promise<number> {
  const { io, out, loaded } = ctx;
  const thresholds = resolveThresholds(flags, io.env, loaded.config);
  const registry = new PortalRegistry(loaded, io.cwd, io.env);
  try {
    const location = await registry.locate(flags.from);
    const path = await location.portal.resolve(location.path);
    const manifest = await scan(location.portal, path, { symlinks: flags.symlinks });
    const decision = plan(manifest, { strategy: flags.strategy, thresholds });
    const source = { portal: location.portal.name, path };
    if (flags.json) {
      out.json({ source, ...summarizePlan(decision), skippedSymlinks: manifest.skippedSymlinks });
    } else {
      const lines = [
        `${showEndpoint(source)}: ${decision.strategy}${decision.forced ? ' (forced)' : ''}`,
        `  reason      ${decision.reason}`,
        `  source      ${manifest.rootKind}, ${decision.nFiles} file(s), ${formatBytes(decision.totalBytes)}, average ${formatBytes(Math.round(decision.avgSizeBytes))}`,
        `  thresholds  ZIP_FIRST above ${decision.thresholds.files} files averaging under ${formatBytes(decision.thresholds.avgSizeBytes)}`,
      ];
      if (manifest.skippedSymlinks.length > 0) lines.push(`  skipped     ${manifest.skippedSymlinks.length} symbolic link(s)`);
      out.text(`${lines.join('\n')}\n`);
    }
    return ExitCode.OK;
  } finally {
    await registry.closeAll();
  }
}
