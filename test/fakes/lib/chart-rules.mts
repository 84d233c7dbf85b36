// The helm double's allow-table (test/fakes/charts.json) as tests extend it. Plain data, no process started: the
// e2e tests import it too (testkit.mts prepares the server's Node on import).
import fs from 'node:fs';

/**
 * The shipped rules (charts.json) of `charts`, each also allowing `earlier` versions: a test's charts.json replaces
 * the shipped rule of a chart it names, so it must carry the rest of that rule (values checks, effects) along.
 */
export function chartRulesAllowing(
  charts: readonly string[],
  earlier: readonly string[],
): { charts: Record<string, unknown> } {
  const shipped = JSON.parse(fs.readFileSync(new URL('../charts.json', import.meta.url), 'utf8')) as {
    charts: Record<string, { versions: string[] }>;
  };
  const out: Record<string, unknown> = {};
  for (const c of charts) {
    const rule = shipped.charts[c];
    if (rule === undefined) throw new Error(`charts.json has no rule for ${c}`);
    out[c] = { ...rule, versions: [...earlier, ...rule.versions] };
  }
  return { charts: out };
}
