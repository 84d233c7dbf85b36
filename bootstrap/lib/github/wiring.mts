// Step 70's repository wiring: the variables, secrets and webhook the repository needs, planned against what GitHub
// has and what the journal says this tool created, then written with each write journaled first.
//
// Ownership rule (docs/github.md): the server journal (lib/state.mts, section `github`) lists the variables,
// secrets and webhooks this tool CREATED. Only those are ever deleted, and only when the configuration no longer
// wants them. A name that existed before the tool wanted it is updated when wanted, and never deleted.
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, chmodSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import tweetsodium from 'tweetsodium';
import type { Config } from '../config.mts';
import type { Logger } from '../log.mts';
import { registerSecret } from '../redact.mts';
import { OperationError, UsageError } from '../errors.mts';
import { writeFileAtomic } from '../fsx.mts';
import { readJournal, writeJournal } from '../state.mts';
import type { GitHubJournal, GitHubSecretRecord, GitHubWebhookRecord } from '../state.mts';
import { explainGitHubError, httpStatus, wasRetried } from './client.mts';
import type { GitHubClient, RepoRef } from './client.mts';
import type { HttpErrorLike } from './client.mts';

// ------------------------------------------------------------------------------------------------
// Webhook events setting and the generated webhook secret

export const WEBHOOK_EVENT = /^[a-z_]+$/;

export function webhookEvents(cfg: Config): string[] {
  const raw = cfg.get('CODEXK8S_GITHUB_WEBHOOK_EVENTS');
  const events = [
    ...new Set(
      raw
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
    ),
  ].sort();
  const bad = events.filter((e) => !WEBHOOK_EVENT.test(e) && e !== '*');
  if (events.length === 0 || bad.length > 0) {
    throw new UsageError(
      `CODEXK8S_GITHUB_WEBHOOK_EVENTS: ${JSON.stringify(raw)} is not a list of events${bad.length ? ` (${bad.join(', ')})` : ''}; expected GitHub event names separated by commas, e.g. push,pull_request`,
    );
  }
  return events;
}

/**
 * A secret generated once on the server and read back on every later run (0600 file, directory 0700).
 * Rotation: delete the file and run again (docs/github.md). Returns undefined when absent and `create` is false,
 * so a read-only check() never creates it.
 */
export async function readOrCreateSecretFile(
  path: string,
  create: boolean,
): Promise<{ value: string; created: boolean } | undefined> {
  try {
    const st = statSync(path);
    if ((st.mode & 0o077) !== 0) {
      if (!create)
        throw new OperationError(
          `${path} is readable by other users (mode 0${(st.mode & 0o777).toString(8)}); want 0600`,
        );
      chmodSync(path, 0o600);
    }
    const value = readFileSync(path, 'utf8').trim();
    if (value.length < 32)
      throw new OperationError(`${path} holds ${value.length} characters; a generated secret has 64`, {
        hint: `delete it to generate a new one (then run again): rm ${path}`,
      });
    registerSecret(value);
    return { value, created: false };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    if (!create) return undefined;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    chmodSync(dirname(path), 0o700);
    const value = randomBytes(32).toString('hex');
    registerSecret(value);
    await writeFileAtomic(path, value + '\n', { mode: 0o600, uid: 0, gid: 0 });
    return { value, created: true };
  }
}

// ------------------------------------------------------------------------------------------------
// Repository wiring: variables, secrets, webhook

export interface WebhookWanted {
  url: string;
  events: readonly string[];
  secret: string;
}

export interface Wanted {
  variables: Readonly<Record<string, string>>;
  secrets: Readonly<Record<string, string>>;
  /** undefined: no webhook (local mode); a webhook this tool created earlier is then removed. */
  webhook?: WebhookWanted;
}

export interface HookInfo {
  id: number;
  url: string;
  contentType: string;
  insecureSsl: string;
  events: string[];
  active: boolean;
}

/**
 * The repository as GitHub names it. The journal is keyed on the id, so a setting that differs only in case
 * (GitHub matches owner/name case-insensitively) or names the repository after a rename is the same repository.
 */
export interface RepoIdentity {
  id: number;
  /** Canonical owner/name, in GitHub's spelling. */
  fullName: string;
}

export interface RepoSnapshot {
  repo: RepoIdentity;
  variables: Map<string, string>;
  secrets: Map<string, { updatedAt: string }>;
  publicKey: { keyId: string; key: string };
  hooks: HookInfo[];
}

export type Action =
  | { kind: 'create-variable'; name: string; value: string }
  | { kind: 'update-variable'; name: string; value: string; adopted: boolean }
  | { kind: 'delete-variable'; name: string }
  | { kind: 'put-secret'; name: string; value: string; why: string; create: boolean }
  | { kind: 'delete-secret'; name: string }
  | { kind: 'create-webhook'; hook: WebhookWanted }
  | { kind: 'update-webhook'; id: number; hook: WebhookWanted; why: string; created: boolean }
  | { kind: 'delete-webhook'; id: number; url: string }
  | { kind: 'forget-webhook'; id: number; url: string }
  | { kind: 'forget-pending-webhook'; url: string };

export function emptyGitHubJournal(repo: RepoIdentity): GitHubJournal {
  return {
    repo: repo.fullName,
    repoId: repo.id,
    salt: randomBytes(16).toString('hex'),
    variables: [],
    secrets: {},
    webhooks: [],
  };
}

/** HMAC (keyed with the journal's random salt) of what was written: the journal never holds a guessable hash. */
export function fingerprint(salt: string, ...parts: readonly string[]): string {
  return createHmac('sha256', salt).update(parts.join('\0')).digest('hex');
}

export function hookUrl(domain: string): string {
  return `https://${domain}/webhooks/github`;
}

/** Pure: the actions that bring the repository from `snap` to `wanted`, given what the journal says we own. */
export function planWiring(wanted: Wanted, snap: RepoSnapshot, j: GitHubJournal): Action[] {
  const actions: Action[] = [];
  const owned = new Set(j.variables);
  for (const [name, value] of Object.entries(wanted.variables)) {
    const current = snap.variables.get(name);
    if (current === undefined) actions.push({ kind: 'create-variable', name, value });
    else if (current !== value) actions.push({ kind: 'update-variable', name, value, adopted: !owned.has(name) });
  }
  for (const name of j.variables)
    if (!(name in wanted.variables) && snap.variables.has(name)) actions.push({ kind: 'delete-variable', name });

  for (const [name, value] of Object.entries(wanted.secrets)) {
    const rec = j.secrets[name];
    const remote = snap.secrets.get(name);
    let why: string | undefined;
    if (!remote) why = 'missing in the repository';
    else if (!rec) why = 'not written by this tool yet';
    else if (rec.pending) why = 'the last write was not confirmed (the run stopped before reading it back)';
    else if (rec.fingerprint !== fingerprint(j.salt, 'secret', name, value)) why = 'value changed';
    else if (rec.updatedAt !== undefined && rec.updatedAt !== remote.updatedAt)
      why = `changed outside this tool (updated ${remote.updatedAt})`;
    if (why) actions.push({ kind: 'put-secret', name, value, why, create: !remote });
  }
  for (const [name, rec] of Object.entries(j.secrets))
    if (rec.created && !(name in wanted.secrets) && snap.secrets.has(name))
      actions.push({ kind: 'delete-secret', name });

  const mine = new Map(j.webhooks.map((h) => [h.id, h]));
  if (wanted.webhook) {
    const w = wanted.webhook;
    const same = snap.hooks.filter((h) => h.url === w.url);
    // Prefer the hook we created; otherwise adopt the first one with the URL (upsert by URL: no duplicates).
    const target = same.find((h) => mine.has(h.id)) ?? same[0];
    // A create whose answer was lost: the hook with that URL is ours, though the journal has no id for it.
    const pendingCreate = (j.pendingWebhooks ?? []).includes(w.url);
    if (!target) actions.push({ kind: 'create-webhook', hook: w });
    else {
      const rec = mine.get(target.id);
      const reasons: string[] = [];
      if (target.contentType !== 'json') reasons.push(`content type ${target.contentType}`);
      if (target.insecureSsl !== '0') reasons.push('TLS verification off');
      if (!target.active) reasons.push('inactive');
      if ([...target.events].sort().join(',') !== [...w.events].sort().join(','))
        reasons.push(`events ${target.events.join(',')}, want ${w.events.join(',')}`);
      if (!rec)
        reasons.push(
          pendingCreate ? 'created by this tool, but the answer to the create was lost' : 'secret not set by this tool',
        );
      else if (rec.secretFingerprint !== fingerprint(j.salt, 'webhook', w.secret)) reasons.push('secret changed');
      if (reasons.length)
        actions.push({
          kind: 'update-webhook',
          id: target.id,
          hook: w,
          why: reasons.join(', '),
          created: rec?.created ?? pendingCreate,
        });
    }
    // Our own duplicates (same URL, another id) go; foreign hooks stay.
    for (const h of same)
      if (h !== target && mine.get(h.id)?.created) actions.push({ kind: 'delete-webhook', id: h.id, url: h.url });
  }
  for (const url of j.pendingWebhooks ?? []) {
    if (wanted.webhook?.url === url) continue;
    const orphans = snap.hooks.filter((h) => h.url === url && !mine.has(h.id));
    for (const h of orphans) actions.push({ kind: 'delete-webhook', id: h.id, url });
    if (orphans.length === 0) actions.push({ kind: 'forget-pending-webhook', url });
  }
  for (const rec of j.webhooks) {
    const live = snap.hooks.find((h) => h.id === rec.id);
    if (!live) {
      if (!wanted.webhook || rec.url !== wanted.webhook.url)
        actions.push({ kind: 'forget-webhook', id: rec.id, url: rec.url });
      continue;
    }
    if (wanted.webhook && live.url === wanted.webhook.url) continue;
    if (rec.created) actions.push({ kind: 'delete-webhook', id: rec.id, url: live.url });
    else actions.push({ kind: 'forget-webhook', id: rec.id, url: live.url });
  }
  return actions;
}

/** --uninstall wants nothing: planWiring then deletes exactly what the journal says this tool created. */
export const NOTHING_WANTED: Wanted = { variables: {}, secrets: {}, webhook: undefined };

/**
 * Pure: the teardown of the wiring. Only names the journal lists as created are deleted; an adopted webhook is only
 * forgotten; an adopted variable or secret is never touched (the journal does not even list it as ours).
 */
export function teardownPlan(snap: RepoSnapshot, j: GitHubJournal): Action[] {
  return planWiring(NOTHING_WANTED, snap, j);
}

/** One line per thing of ours --uninstall removes (or forgets), for the teardown's check(). */
export function describeTeardown(a: Action, repo: string): string {
  switch (a.kind) {
    case 'delete-variable':
      return `GitHub variable ${a.name} in ${repo} (created by this tool)`;
    case 'delete-secret':
      return `GitHub secret ${a.name} in ${repo} (created by this tool)`;
    case 'delete-webhook':
      return `GitHub webhook ${a.url} (id ${a.id}) in ${repo} (created by this tool)`;
    case 'forget-webhook':
      return `the journal's record of webhook ${a.url} (id ${a.id}; not created by this tool, or gone: forgotten, never deleted)`;
    case 'forget-pending-webhook':
      return `the journal's record of an unanswered create of webhook ${a.url} (GitHub has no such hook: forgotten)`;
    default:
      // planWiring with nothing wanted creates and updates nothing.
      return describeAction(a, repo);
  }
}

/** One drift line per action, for check(). Values of variables are shown; secrets never. */
export function describeAction(a: Action, repo: string): string {
  switch (a.kind) {
    case 'create-variable':
      return `variable ${a.name} is missing in ${repo}, want ${JSON.stringify(a.value)}`;
    case 'update-variable':
      return `variable ${a.name} differs, want ${JSON.stringify(a.value)}${a.adopted ? ' (it was not created by this tool; it is updated, and never deleted)' : ''}`;
    case 'delete-variable':
      return `variable ${a.name} was created by this tool and is no longer used`;
    case 'put-secret':
      return `secret ${a.name}: ${a.why}`;
    case 'delete-secret':
      return `secret ${a.name} was created by this tool and is no longer used`;
    case 'create-webhook':
      return `webhook ${a.hook.url} is missing (events ${a.hook.events.join(',')})`;
    case 'update-webhook':
      return `webhook ${a.hook.url} (id ${a.id}) differs: ${a.why}`;
    case 'delete-webhook':
      return `webhook ${a.url} (id ${a.id}) was created by this tool and is no longer used`;
    case 'forget-webhook':
      return `webhook ${a.url} (id ${a.id}) is no longer managed (${a.id} is gone or was not created by this tool); the journal forgets it`;
    case 'forget-pending-webhook':
      return `webhook ${a.url}: a create whose answer was lost left nothing in ${repo}; the journal forgets it`;
  }
}

/** Every variable, following pagination (GitHub serves at most 30 per page). */
export async function listVariables(gh: GitHubClient, ref: RepoRef): Promise<Map<string, string>> {
  const all = await gh.paginate('GET /repos/{owner}/{repo}/actions/variables', { ...ref, per_page: 30 });
  return new Map(all.map((v) => [v.name, v.value]));
}

export async function listSecrets(gh: GitHubClient, ref: RepoRef): Promise<Map<string, { updatedAt: string }>> {
  const all = await gh.paginate('GET /repos/{owner}/{repo}/actions/secrets', { ...ref, per_page: 100 });
  return new Map(all.map((s) => [s.name, { updatedAt: s.updated_at }]));
}

export async function listHooks(gh: GitHubClient, ref: RepoRef): Promise<HookInfo[]> {
  const all = await gh.paginate('GET /repos/{owner}/{repo}/hooks', { ...ref, per_page: 100 });
  return all.map((h) => ({
    id: h.id,
    url: h.config.url ?? '',
    contentType: h.config.content_type ?? 'form',
    insecureSsl: String(h.config.insecure_ssl ?? '0'),
    events: [...h.events],
    active: h.active,
  }));
}

export async function repoIdentity(gh: GitHubClient, ref: RepoRef): Promise<RepoIdentity> {
  const r = await gh.request('GET /repos/{owner}/{repo}', ref);
  return { id: Number(r.data.id), fullName: r.data.full_name };
}

/** What the repository has; `repo` saves the GET /repos when the caller already asked (it needed the journal first). */
export async function snapshot(
  gh: GitHubClient,
  ref: RepoRef,
  withHooks: boolean,
  repo?: RepoIdentity,
): Promise<RepoSnapshot> {
  const identity = repo ?? (await repoIdentity(gh, ref));
  const variables = await listVariables(gh, ref);
  const secrets = await listSecrets(gh, ref);
  const key = await gh.request('GET /repos/{owner}/{repo}/actions/secrets/public-key', ref);
  const hooks = withHooks ? await listHooks(gh, ref) : [];
  return { repo: identity, variables, secrets, publicKey: { keyId: key.data.key_id, key: key.data.key }, hooks };
}

/** tweetsodium (libsodium's sealed box) with the repository's public key, as GitHub's secrets API expects. */
export function sealSecret(value: string, publicKeyBase64: string): string {
  const sealed = tweetsodium.seal(Buffer.from(value, 'utf8'), Buffer.from(publicKeyBase64, 'base64'));
  return Buffer.from(sealed).toString('base64');
}

/**
 * The journal's github section for this repository, keyed on GitHub's id. A section written before the id was
 * journaled is matched by its name, case-insensitively as GitHub matches names, and comes back migrated (id and
 * canonical name; applyWiring saves it). A section of another repository is set aside (never acted on).
 */
export function githubJournal(journalPath: string, repo: RepoIdentity, log?: Logger): GitHubJournal {
  const j = readJournal(journalPath).github;
  if (j && sameRepository(j, repo)) {
    if (j.repo !== repo.fullName)
      log?.detail(`the journal's GitHub names of ${j.repo} belong to ${repo.fullName} (repository id ${repo.id})`);
    return { ...j, repo: repo.fullName, repoId: repo.id };
  }
  if (j)
    log?.warn(
      `the journal's GitHub names belong to ${j.repo}, not ${repo.fullName}: they are left as they are there, and ${repo.fullName} starts a new list`,
    );
  return emptyGitHubJournal(repo);
}

function sameRepository(j: GitHubJournal, repo: RepoIdentity): boolean {
  if (j.repoId !== undefined) return j.repoId === repo.id;
  return j.repo.toLowerCase() === repo.fullName.toLowerCase();
}

function saveGitHubJournal(journalPath: string, g: GitHubJournal): void {
  writeJournal(journalPath, { ...readJournal(journalPath), github: g });
}

/**
 * applyWiring's failure: the request that failed, and the writes made (and journaled) before it. It reads as the
 * request's own error (status, response), so the GitHub error helpers explain it as they explain any request.
 */
export class WiringFailure extends Error {
  readonly failure: unknown;
  readonly request: string | undefined;
  readonly done: readonly string[];
  constructor(failure: unknown, request: string | undefined, done: readonly string[]) {
    super(
      `${request ?? 'GitHub wiring'} failed after ${done.length} write(s): ${(failure as Error | undefined)?.message ?? String(failure)}`,
      { cause: failure },
    );
    this.name = 'WiringFailure';
    this.failure = failure;
    this.request = request;
    this.done = done;
  }
  get status(): number | undefined {
    return httpStatus(this.failure);
  }
  get response(): HttpErrorLike['response'] {
    return (this.failure as HttpErrorLike | undefined)?.response;
  }
}

/** "POST /repos/o/r/hooks -> 403" for an Octokit RequestError (path relative to the API base); undefined for no request. */
export function failedRequest(e: unknown, baseUrl: string): string | undefined {
  const req = (e as { request?: { method?: unknown; url?: unknown } } | undefined)?.request;
  if (typeof req?.method !== 'string' || typeof req.url !== 'string') return undefined;
  const path = (req.url.startsWith(baseUrl) ? req.url.slice(baseUrl.length) : req.url).replace(/\?.*$/, '');
  return `${req.method} ${path} -> ${httpStatus(e) ?? 'no answer'}`;
}

/** A failed step 70 as an OperationError: the failing request in the message, the writes made before it as detail. */
export function explainWiringError(e: unknown, repo: string, githubUrl: string): OperationError {
  if (!(e instanceof WiringFailure)) return explainGitHubError(e, `updating ${repo}`, repo, githubUrl);
  const base = explainGitHubError(e, `updating ${repo}${e.request ? `: ${e.request}` : ''}`, repo, githubUrl);
  const done =
    e.done.length > 0
      ? [
          `writes made before the failure (${e.done.length}, journaled; the next run keeps them and goes on):`,
          ...e.done.map((c) => `+ ${c}`),
        ]
      : ['no write was made before the failure'];
  return new OperationError(base.message, { hint: base.hint, exitCode: base.exitCode, detail: done.join('\n') });
}

/**
 * Runs the plan, one request per action, and journals each write (before the request when its answer could be
 * lost), so an interrupted run keeps what it created (and a re-run neither duplicates nor forgets it). Returns one
 * change line per action; a failure is a WiringFailure naming the request and the writes made before it.
 */
export async function applyWiring(
  gh: GitHubClient,
  ref: RepoRef,
  actions: readonly Action[],
  snap: RepoSnapshot,
  journalPath: string,
  log: Logger,
): Promise<string[]> {
  const changes: string[] = [];
  try {
    await applyActions(gh, ref, actions, snap, journalPath, log, changes);
  } catch (e) {
    throw new WiringFailure(e, failedRequest(e, gh.request.endpoint.DEFAULTS.baseUrl), changes);
  }
  return changes;
}

/** applyWiring's loop: `changes` gets one line per write as soon as it is made, so a failure still has them. */
async function applyActions(
  gh: GitHubClient,
  ref: RepoRef,
  actions: readonly Action[],
  snap: RepoSnapshot,
  journalPath: string,
  log: Logger,
  changes: string[],
): Promise<void> {
  let j = githubJournal(journalPath, snap.repo, log);
  const save = (next: GitHubJournal) => {
    j = next;
    saveGitHubJournal(journalPath, j);
  };
  // A write that can take effect although its answer is lost is journaled first; a 4xx to the first and only try
  // means GitHub wrote nothing.
  const intent = async <T,>(next: GitHubJournal, write: () => Promise<T>): Promise<T> => {
    const before = j;
    save(next);
    try {
      return await write();
    } catch (e) {
      const status = httpStatus(e);
      if (status !== undefined && status >= 400 && status < 500 && !wasRetried(e)) save(before);
      throw e;
    }
  };
  const stored = readJournal(journalPath).github;
  // A new list, or one migrated to the id and canonical name, is saved before the first write.
  if (stored?.repoId !== j.repoId || stored?.repo !== j.repo) save(j);
  for (const a of actions) {
    switch (a.kind) {
      case 'create-variable':
        await intent({ ...j, variables: [...new Set([...j.variables, a.name])].sort() }, () =>
          gh.request('POST /repos/{owner}/{repo}/actions/variables', { ...ref, name: a.name, value: a.value }),
        );
        changes.push(`created variable ${a.name}=${JSON.stringify(a.value)}`);
        break;
      case 'update-variable':
        await gh.request('PATCH /repos/{owner}/{repo}/actions/variables/{name}', {
          ...ref,
          name: a.name,
          value: a.value,
        });
        changes.push(`updated variable ${a.name}=${JSON.stringify(a.value)}`);
        break;
      case 'delete-variable':
        await ignore404(gh.request('DELETE /repos/{owner}/{repo}/actions/variables/{name}', { ...ref, name: a.name }));
        save({ ...j, variables: j.variables.filter((n) => n !== a.name) });
        changes.push(`deleted variable ${a.name} (created by this tool, no longer used)`);
        break;
      case 'put-secret': {
        const encrypted_value = sealSecret(a.value, snap.publicKey.key);
        const prev: GitHubSecretRecord | undefined = j.secrets[a.name];
        const fp = fingerprint(j.salt, 'secret', a.name, a.value);
        const created = prev?.created ?? a.create;
        // Pending until read back: a lost answer or a failed read-back leaves it owned, and written again next run.
        await intent({ ...j, secrets: { ...j.secrets, [a.name]: { fingerprint: fp, created, pending: true } } }, () =>
          gh.request('PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}', {
            ...ref,
            secret_name: a.name,
            encrypted_value,
            key_id: snap.publicKey.keyId,
          }),
        );
        // GitHub's updated_at, read back, tells a later run whether someone changed the secret by hand.
        const after = await gh.request('GET /repos/{owner}/{repo}/actions/secrets/{secret_name}', {
          ...ref,
          secret_name: a.name,
        });
        save({
          ...j,
          secrets: { ...j.secrets, [a.name]: { fingerprint: fp, updatedAt: after.data.updated_at, created } },
        });
        changes.push(`${a.create ? 'created' : 'wrote'} secret ${a.name} (${a.why})`);
        break;
      }
      case 'delete-secret': {
        await ignore404(
          gh.request('DELETE /repos/{owner}/{repo}/actions/secrets/{secret_name}', { ...ref, secret_name: a.name }),
        );
        const rest = { ...j.secrets };
        delete rest[a.name];
        save({ ...j, secrets: rest });
        changes.push(`deleted secret ${a.name} (created by this tool, no longer used)`);
        break;
      }
      case 'create-webhook': {
        // The id comes with the answer: until then the URL is journaled as pending (planWiring adopts it as ours).
        const pending = [...new Set([...(j.pendingWebhooks ?? []), a.hook.url])];
        const r = await intent({ ...j, pendingWebhooks: pending }, () =>
          gh.request('POST /repos/{owner}/{repo}/hooks', {
            ...ref,
            name: 'web',
            active: true,
            events: [...a.hook.events],
            config: hookConfig(a.hook),
          }),
        );
        const rec: GitHubWebhookRecord = {
          id: r.data.id,
          url: a.hook.url,
          secretFingerprint: fingerprint(j.salt, 'webhook', a.hook.secret),
          created: true,
        };
        save(withoutPending({ ...j, webhooks: [...j.webhooks.filter((h) => h.id !== rec.id), rec] }, a.hook.url));
        changes.push(`created webhook ${a.hook.url} (id ${r.data.id}, events ${a.hook.events.join(',')})`);
        break;
      }
      case 'update-webhook': {
        await gh.request('PATCH /repos/{owner}/{repo}/hooks/{hook_id}', {
          ...ref,
          hook_id: a.id,
          active: true,
          events: [...a.hook.events],
          config: hookConfig(a.hook),
        });
        const rec: GitHubWebhookRecord = {
          id: a.id,
          url: a.hook.url,
          secretFingerprint: fingerprint(j.salt, 'webhook', a.hook.secret),
          created: a.created,
        };
        save(withoutPending({ ...j, webhooks: [...j.webhooks.filter((h) => h.id !== a.id), rec] }, a.hook.url));
        changes.push(`updated webhook ${a.hook.url} (id ${a.id}: ${a.why})`);
        break;
      }
      case 'delete-webhook':
        await ignore404(gh.request('DELETE /repos/{owner}/{repo}/hooks/{hook_id}', { ...ref, hook_id: a.id }));
        save(withoutPending({ ...j, webhooks: j.webhooks.filter((h) => h.id !== a.id) }, a.url));
        changes.push(`deleted webhook ${a.url} (id ${a.id}, created by this tool, no longer used)`);
        break;
      case 'forget-webhook':
        save({ ...j, webhooks: j.webhooks.filter((h) => h.id !== a.id) });
        changes.push(`forgot webhook ${a.url} (id ${a.id})`);
        break;
      case 'forget-pending-webhook':
        save(withoutPending(j, a.url));
        changes.push(`forgot the unanswered create of webhook ${a.url} (GitHub has no such hook)`);
        break;
    }
  }
}

function withoutPending(j: GitHubJournal, url: string): GitHubJournal {
  const rest = (j.pendingWebhooks ?? []).filter((u) => u !== url);
  const { pendingWebhooks: _gone, ...base } = j;
  return rest.length ? { ...base, pendingWebhooks: rest } : base;
}

function hookConfig(h: WebhookWanted) {
  return { url: h.url, content_type: 'json', secret: h.secret, insecure_ssl: '0' };
}

async function ignore404<T>(p: Promise<T>): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (httpStatus(e) !== 404) throw e;
  }
}
