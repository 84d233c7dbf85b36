// The summary table at the end of a run: each step, its status and time, and where the logs are.
import { relative } from 'node:path';
import { color, formatSeconds } from '../log.mts';
import { STEPS } from '../catalogue.mts';
import type { Journal } from '../state.mts';
import { REMOTE } from '../paths.mts';
import { NAME_WIDTH } from './context.mts';
import type { Ctx, LaunchResult } from './context.mts';

export function printSummary(
  ctx: Ctx,
  selected: readonly string[],
  results: Map<string, LaunchResult>,
  journal: Journal,
  seconds: number,
): void {
  const { log, cfg } = ctx;
  log.info('');
  log.info(color.bold('Summary'));
  let changedSteps = 0;
  for (const s of STEPS) {
    const r = results.get(s.name);
    const rec = journal.steps[s.name];
    let state: string;
    if (r) {
      state = r.status === 'changed' ? `changed ${r.changes.length}` : r.status;
      if (r.status === 'changed') changedSteps++;
    } else if (selected.includes(s.name)) state = 'not run (an earlier step failed)';
    else state = `skipped (last: ${rec ? `${rec.status} ${rec.endedAt ?? rec.startedAt}` : 'never ran'})`;
    const time = r ? formatSeconds(r.seconds) : '';
    log.info(`  ${s.name.padEnd(NAME_WIDTH)} ${state.padEnd(16)} ${time}`);
  }
  const ran = selected.filter((n) => results.has(n)).length;
  log.info(`  ${ran} step(s) run, ${changedSteps} changed, total ${formatSeconds(seconds)}`);
  if (selected.every((n) => results.get(n) && results.get(n)?.status !== 'failed')) {
    log.info('');
    log.info(color.bold('Next'));
    log.info(
      `  log in as the operator:  ssh -p ${cfg.get('CODEXK8S_SSH_PORT')} -i ${cfg.get('OPERATOR_SSH_KEY')} ${cfg.get('OPERATOR_USER')}@${cfg.get('TARGET_HOST')}`,
    );
    if (cfg.get('CODEXK8S_SSH_PORT') !== cfg.get('TARGET_PORT'))
      log.info(
        `  sshd now listens on ${cfg.get('CODEXK8S_SSH_PORT')}: set TARGET_PORT=${cfg.get('CODEXK8S_SSH_PORT')} for the next run`,
      );
    log.info(`  check a step by hand:    ${ctx.sshHint} ${REMOTE.base}/bootstrap/remote/10_harden_host.mts --check`);
    const rel = relative(process.cwd(), log.filePath ?? '');
    log.info(`  this run's log:          ${rel.startsWith('..') ? log.filePath : rel}`);
  }
}
