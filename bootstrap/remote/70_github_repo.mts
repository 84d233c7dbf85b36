#!/opt/codex-k8s-bootstrap/node/bin/node --
// 70_github_repo: wires the GitHub repository to this staging: the Actions variables the deploy workflow reads,
// the Actions secrets it needs (sealed with the repository's public key), and in server mode the codex-k8s
// webhook. Every write is an upsert that is skipped when GitHub already has the value; the journal's `github`
// section lists what this tool created, keyed on GitHub's repository id (not the setting's spelling), so a later
// run removes only its own leftovers (docs/github.md).
// Talks to CODEXK8S_GITHUB_API_URL with CODEXK8S_GITHUB_PAT from bootstrap.env; the launcher checked the token's
// permissions before the run started.
import { runStep, changeList } from '../lib/step.mts';
import type { StepContext, Teardown } from '../lib/step.mts';
import { formatDuration } from '../lib/config.mts';
import type { Config } from '../lib/config.mts';
import { REMOTE } from '../lib/paths.mts';
import { clientFromConfig, repoRef, explainGitHubError } from '../lib/github/client.mts';
import {
  repoIdentity,
  snapshot,
  planWiring,
  applyWiring,
  describeAction,
  githubJournal,
  explainWiringError,
  readOrCreateSecretFile,
  webhookEvents,
  hookUrl,
  describeTeardown,
  NOTHING_WANTED,
} from '../lib/github/wiring.mts';
import type { Wanted } from '../lib/github/wiring.mts';
import { readJournal } from '../lib/state.mts';

// ---- check / apply --------------------------------------------------------------------------------------------------

async function check(ctx: StepContext): Promise<string[]> {
  const secret = await readOrCreateSecretFile(WEBHOOK_SECRET_FILE, false);
  const drift: string[] = [];
  if (!secret)
    drift.push(
      `the webhook secret ${WEBHOOK_SECRET_FILE} is not generated yet (so neither the secret ${WEBHOOK_SECRET_NAME} nor the webhook can be current)`,
    );
  const { repo, actions } = await inspect(ctx, wanted(ctx.cfg, secret?.value));
  return [...drift, ...actions.map((a) => describeAction(a, repo))];
}

async function apply(ctx: StepContext): Promise<string[]> {
  const changes = changeList(ctx);
  const secret = await readOrCreateSecretFile(WEBHOOK_SECRET_FILE, true);
  if (!secret) throw new Error('unreachable: readOrCreateSecretFile(create=true) returned nothing');
  if (secret.created) changes.push(`generated the webhook secret ${WEBHOOK_SECRET_FILE} (0600)`);
  const { gh, ref, repo, snap, actions } = await inspect(ctx, wanted(ctx.cfg, secret.value));
  try {
    changes.push(...(await applyWiring(gh, ref, actions, snap, REMOTE.journal, ctx.log)));
  } catch (e) {
    throw explainWiringError(e, repo, ctx.cfg.get('CODEXK8S_GITHUB_URL'));
  }
  return changes;
}

// ---- --uninstall: what the journal says this tool created goes; nothing else is touched --------------------------

const teardown: Teardown = {
  async check(ctx) {
    // No record of writes: nothing of ours on GitHub, and no need to ask it (the token may be revoked by now).
    if (readJournal(REMOTE.journal).github === undefined) return [];
    const { repo, actions } = await inspect(ctx, NOTHING_WANTED);
    return actions.map((a) => describeTeardown(a, repo));
  },
  async apply(ctx) {
    const changes = changeList(ctx);
    if (readJournal(REMOTE.journal).github === undefined) return changes;
    const { gh, ref, repo, snap, actions } = await inspect(ctx, NOTHING_WANTED);
    try {
      changes.push(...(await applyWiring(gh, ref, actions, snap, REMOTE.journal, ctx.log)));
    } catch (e) {
      throw explainWiringError(e, repo, ctx.cfg.get('CODEXK8S_GITHUB_URL'));
    }
    return changes;
  },
};

// ---- how they read and change the server ---------------------------------------------------------------------------

/** The webhook secret (generated once by 50_deploy_codex_k8s or here, whichever runs first). */
export const WEBHOOK_SECRET_FILE = REMOTE.webhookSecretFile;
/** Name of the Actions secret holding it: the deploy workflow's smoke job signs a test delivery with it. */
export const WEBHOOK_SECRET_NAME = 'CODEXK8S_WEBHOOK_SECRET';
/**
 * Where the deploy workflow's smoke job reaches staging from its runner pod, inside the cluster. Local mode: the
 * Ingress has no host rule, so Traefik's Service answers for the app under its cluster DNS name, plain HTTP.
 */
export const LOCAL_STAGING_URL = 'http://traefik.kube-system.svc.cluster.local';

/** Pure: the staging URL the workflow's smoke job checks (server mode: the public HTTPS name, TLS included). */
export function stagingUrl(cfg: Config): string {
  return cfg.get('CODEXK8S_MODE') === 'server' ? `https://${cfg.get('CODEXK8S_STAGING_DOMAIN')}` : LOCAL_STAGING_URL;
}

/** Pure: the repository variables the deploy workflow reads. */
export function wantedVariables(cfg: Config): Record<string, string> {
  const mode = cfg.get('CODEXK8S_MODE');
  const vars: Record<string, string> = {
    CODEXK8S_MODE: mode,
    CODEXK8S_STAGING_NAMESPACE: cfg.get('CODEXK8S_STAGING_NAMESPACE'),
    // What workflows put in runs-on.
    CODEXK8S_RUNNER_SCALE_SET_NAME: cfg.get('CODEXK8S_RUNNER_SCALE_SET_NAME'),
    // Where BuildKit pushes and the Deployment pulls from (registries.yaml maps it to the node's loopback).
    CODEXK8S_INTERNAL_REGISTRY: `registry.codex-k8s.internal:${cfg.get('CODEXK8S_INTERNAL_REGISTRY_PORT')}`,
    CODEXK8S_ROLLOUT_TIMEOUT: formatDuration(cfg.get('CODEXK8S_ROLLOUT_TIMEOUT')),
    CODEXK8S_STAGING_URL: stagingUrl(cfg),
  };
  if (mode === 'server') vars['CODEXK8S_STAGING_DOMAIN'] = cfg.get('CODEXK8S_STAGING_DOMAIN');
  // The nightly backup (staging-backup.yml) runs only with a recipient: without one it has no key to encrypt to.
  const recipient = cfg.maybe('CODEXK8S_BACKUP_AGE_RECIPIENT');
  if (recipient !== undefined) {
    vars['CODEXK8S_BACKUP_AGE_RECIPIENT'] = recipient;
    vars['CODEXK8S_BACKUP_RETENTION_DAYS'] = String(cfg.get('CODEXK8S_BACKUP_RETENTION_DAYS'));
  }
  return vars;
}

/** Pure: the whole wanted state, given the webhook secret (undefined while it is not generated yet). */
export function wanted(cfg: Config, webhookSecret: string | undefined): Wanted {
  const secrets: Record<string, string> = webhookSecret ? { [WEBHOOK_SECRET_NAME]: webhookSecret } : {};
  const server = cfg.get('CODEXK8S_MODE') === 'server';
  return {
    variables: wantedVariables(cfg),
    secrets,
    webhook:
      server && webhookSecret
        ? { url: hookUrl(cfg.get('CODEXK8S_STAGING_DOMAIN')), events: webhookEvents(cfg), secret: webhookSecret }
        : undefined,
  };
}

/** GitHub's state and the plan from it to `want` (the step's wanted state, or nothing for --uninstall). */
async function inspect(ctx: StepContext, want: Wanted) {
  const { cfg, log } = ctx;
  const ref = repoRef(cfg);
  let repo = `${ref.owner}/${ref.repo}`;
  const gh = clientFromConfig(cfg, log);
  let withHooks = cfg.get('CODEXK8S_MODE') === 'server';
  try {
    // The journal is looked up by GitHub's id for the repository, so it is asked for first.
    const identity = await repoIdentity(gh, ref);
    repo = identity.fullName;
    const journal = githubJournal(REMOTE.journal, identity, log);
    // Hooks are listed in server mode, or to remove one this tool created (a local-mode token may lack Webhooks).
    withHooks ||= journal.webhooks.length > 0 || (journal.pendingWebhooks ?? []).length > 0;
    const snap = await snapshot(gh, ref, withHooks, identity);
    return { gh, ref, repo, snap, actions: planWiring(want, snap, journal) };
  } catch (e) {
    throw explainGitHubError(
      e,
      `reading ${repo}'s variables, secrets${withHooks ? ' and webhooks' : ''}`,
      repo,
      cfg.get('CODEXK8S_GITHUB_URL'),
    );
  }
}

if (import.meta.filename === process.argv[1]) await runStep('70_github_repo', { check, apply, teardown });
