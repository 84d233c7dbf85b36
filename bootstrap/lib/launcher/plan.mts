// --dry-run: what a run would do, from the settings alone (no network, no server).
import { describeValue, SETTINGS } from '../config.mts';
import type { LoadResult } from '../config.mts';
import { Logger, color } from '../log.mts';
import { stepInfo } from '../catalogue.mts';
import { knownHostsPath } from '../ssh.mts';
import { REMOTE, UPLOAD_ENTRIES } from '../paths.mts';
import { NODE } from '../versions.mts';
import { resolveArtifact } from '../artifacts.mts';
import { plannedTokenChecks } from '../github/preflight.mts';
import { webhookEvents } from '../github/wiring.mts';
import { RUNNER_RELEASES_REPO, RUNNER_UPDATE_LIMIT_DAYS } from '../runners.mts';
import { DEPLOY_STEP, enforcesRunnerFreshness, usesGitHub } from './context.mts';

export function printPlan(loaded: LoadResult, selected: readonly string[], log: Logger): number {
  const c = loaded.config;
  const node = resolveArtifact(
    NODE,
    'x64',
    c.maybe('CODEXK8S_ARTIFACT_MIRROR'),
    c.maybe('CODEXK8S_ARTIFACT_SHA256_OVERRIDES'),
  );
  log.info(color.bold(`Plan (dry run: nothing is contacted, nothing changes)`));
  log.info(
    `target   ${c.get('TARGET_ROOT_USER')}@${c.get('TARGET_HOST')}:${c.get('TARGET_PORT')}${c.maybe('CODEXK8S_SSH_JUMP') ? ` via ${c.get('CODEXK8S_SSH_JUMP')}` : ''}   mode ${c.get('CODEXK8S_MODE')}   repo ${c.get('CODEXK8S_GITHUB_REPO')}`,
  );
  log.info('');
  log.info(color.bold('Settings'));
  for (const s of SETTINGS) {
    const v = c[s.name];
    if (v === undefined) continue;
    log.info(
      `  ${s.name.padEnd(34)} ${describeValue(s.name, v)}${loaded.sources[s.name] === 'default' ? color.dim('  (default)') : ''}`,
    );
  }
  log.info('');
  if (usesGitHub(selected)) {
    webhookEvents(c);
    log.info(
      color.bold('GitHub token check (on this machine, before the server is touched; a missing permission exits 2)'),
    );
    for (const line of plannedTokenChecks(c)) log.info(`  - ${line}`);
    log.info(
      `  - runner freshness: GET /repos/${RUNNER_RELEASES_REPO.owner}/${RUNNER_RELEASES_REPO.repo}/releases against ${c.get('CODEXK8S_RUNNER_IMAGE')} (${RUNNER_UPDATE_LIMIT_DAYS} days past a newer release: ${enforcesRunnerFreshness(selected) ? 'exit 2' : 'a warning'})`,
    );
    log.info('');
  }
  log.info(color.bold('Prepare'));
  log.info(
    `  - connect over SSH once (multiplexed), host key pinned in ${knownHostsPath(c.get('CODEXK8S_HOST_STATE_DIR'), c.get('TARGET_HOST'), c.get('TARGET_PORT'))}`,
  );
  log.info(`  - take the server lock ${REMOTE.lockDir}`);
  log.info(
    `  - Node.js ${node.version} in ${REMOTE.node} unless already there (${node.url}, sha256 ${node.sha256.slice(0, 12)}..., arm64 likewise)`,
  );
  log.info(`  - upload ${UPLOAD_ENTRIES.join(', ')} (those that exist) to ${REMOTE.base} unless identical`);
  log.info(
    `  - source.json: the commit of app/ (git rev-parse HEAD); ${DEPLOY_STEP} refuses to run (exit 2) when app/ has uncommitted changes`,
  );
  log.info(`  - write ${REMOTE.envFile} (0600, via stdin) unless identical`);
  log.info('');
  log.info(color.bold('Steps'));
  selected.forEach((name, i) => {
    const info = stepInfo(name);
    log.stepHeader(i + 1, selected.length, name);
    log.info(`    ${info.title}`);
    for (const x of info.checks) log.info(`    checks:  ${x}`);
    for (const x of info.changes) log.info(`    changes: ${x}`);
  });
  log.info('');
  const secrets = SETTINGS.filter((s) => s.secret);
  const missing = new Set(loaded.missingSecrets);
  log.info(color.bold('Secrets a real run needs'));
  for (const s of secrets)
    log.info(
      `  ${s.name.padEnd(34)} ${missing.has(s.name) ? 'not set: a real run asks for it on a terminal (or fails with --yes)' : 'set'}`,
    );
  return 0;
}
