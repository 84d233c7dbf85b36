// The launcher's token check, before the server is touched: which fine-grained permissions the selected steps need,
// one probe each (a write only where it changes nothing), and every missing one reported at once (exit 2).
import type { Config } from '../config.mts';
import type { Logger } from '../log.mts';
import { OperationError, UsageError } from '../errors.mts';
import { acceptedPermissions, clientFromConfig, githubMessage, httpStatus, noAnswer, repoRef } from './client.mts';
import type { GitHubClient } from './client.mts';
import { PERMISSIONS, describeAccepted, permissionLabel, requiredPermissions } from './permissions.mts';
import type { PermissionNeed } from './permissions.mts';

export interface ProbeResult {
  need: PermissionNeed;
  /** The request sent, e.g. "GET /repos/o/r/hooks". */
  request: string;
  ok: boolean;
  status: number;
  message?: string;
  accepted?: string;
}

export interface RepoFacts {
  fullName: string;
  private: boolean;
  ownerType: string;
  /** The token owner's role, as GET /repos reports it (undefined when GitHub sent none). */
  admin: boolean | undefined;
}

/** Pure: probe results -> the problems to report (all of them), with hints on the pattern. */
export function explainPreflight(
  repoName: string,
  repo: RepoFacts,
  results: readonly ProbeResult[],
  githubUrl: string,
): string[] {
  const failed = results.filter((r) => !r.ok);
  if (failed.length === 0) return [];
  const problems = failed.map((r) => {
    const asked = r.accepted ? ` (this request needs ${describeAccepted(r.accepted)})` : '';
    return `CODEXK8S_GITHUB_PAT: the token lacks "${permissionLabel(r.need)}" on ${repoName} (for: ${r.need.why}): ${r.request} answered ${r.status} ${JSON.stringify(r.message ?? '')}${asked}`;
  });
  const others = results.filter((r) => r.need.key !== 'metadata');
  if (repo.admin === false) {
    problems.push(
      `hint: the token's owner is not an admin of ${repoName} (GET /repos/${repoName} reports permissions.admin=false). A fine-grained token never has more rights than its owner: ` +
        `Administration, Secrets, Variables and Webhooks need a repository admin. Ask an admin to create the token, or to give you the admin role.`,
    );
  }
  if (repo.ownerType === 'Organization' && others.length > 0 && others.every((r) => !r.ok)) {
    problems.push(
      `hint: every permission probe was refused while the repository itself is visible. This is how a token that the organization ${repoName.split('/')[0]} has not approved yet behaves ` +
        `(it can read public resources only): ask an organization owner to approve it (${githubUrl}/organizations/${repoName.split('/')[0]}/settings/personal-access-token-requests).`,
    );
  }
  problems.push(
    `hint: edit the token at ${githubUrl}/settings/personal-access-tokens (Repository permissions), then run again; nothing was changed`,
  );
  return problems;
}

/**
 * The launcher's token check, before the server is touched. Probes each permission the run needs, then reports
 * every missing one at once (UsageError, exit 2). A 401 or a missing repository stops at the first request.
 */
export async function preflightToken(
  cfg: Config,
  log: Logger,
  gh: GitHubClient = clientFromConfig(cfg, log),
): Promise<ProbeResult[]> {
  const ref = repoRef(cfg);
  const name = `${ref.owner}/${ref.repo}`;
  const api = cfg.get('CODEXK8S_GITHUB_API_URL');
  const web = cfg.get('CODEXK8S_GITHUB_URL');
  let repo: RepoFacts;
  const meta = PERMISSIONS[0] as PermissionNeed;
  try {
    const r = await gh.request('GET /repos/{owner}/{repo}', ref);
    repo = {
      fullName: r.data.full_name,
      private: r.data.private,
      ownerType: r.data.owner.type,
      admin: r.data.permissions?.admin,
    };
  } catch (e) {
    const status = httpStatus(e);
    if (status === 401) {
      throw new UsageError([
        `CODEXK8S_GITHUB_PAT: GitHub (${api}) refused the token: 401 ${JSON.stringify(githubMessage(e))}. It is wrong, expired or revoked.`,
        `hint: create a fine-grained token at ${web}/settings/personal-access-tokens/new for ${name} with ${requiredPermissions(cfg.get('CODEXK8S_MODE')).map(permissionLabel).join(', ')}, and put it in CODEXK8S_GITHUB_PAT; nothing was changed`,
      ]);
    }
    if (status === 404) {
      throw new UsageError([
        `CODEXK8S_GITHUB_REPO: ${name} was not found with this token (GET /repos/${name} answered 404). Either it does not exist, or the token cannot see it.`,
        `hint: check the name; check that the token's "Repository access" includes ${name} and that its "Resource owner" is ${ref.owner} (a token made under your personal account cannot see an organization's repositories); ` +
          `for an organization that requires approval, a pending token sees public repositories only; nothing was changed`,
      ]);
    }
    const none = noAnswer(e);
    if (none)
      throw new OperationError(`cannot reach the GitHub API at ${api} (${none.code})`, {
        hint: 'check the network and CODEXK8S_GITHUB_API_URL, then run again; nothing was changed',
      });
    if (status === undefined) throw e;
    throw new UsageError([
      `CODEXK8S_GITHUB_PAT: GET /repos/${name} answered ${status} ${JSON.stringify(githubMessage(e))}; expected 200 (needs ${permissionLabel(meta)})`,
    ]);
  }

  const results: ProbeResult[] = [];
  for (const need of requiredPermissions(cfg.get('CODEXK8S_MODE'))) {
    const probeText = `${need.probe.method} ${need.probe.route.replace('{owner}', ref.owner).replace('{repo}', ref.repo)}`;
    const base = { need, request: probeText };
    if (need.key === 'metadata') {
      results.push({ ...base, ok: true, status: 200 });
      continue;
    }
    try {
      // Lists ask for one item: the answer proves access, its content does not matter.
      const params = need.probe.method === 'GET' && need.probe.route.endsWith('s') ? { ...ref, per_page: 1 } : ref;
      const r = await gh.request(`${need.probe.method} ${need.probe.route}`, params);
      results.push({ ...base, ok: true, status: r.status });
    } catch (e) {
      const status = httpStatus(e);
      const none = noAnswer(e);
      if (none)
        throw new OperationError(`cannot reach the GitHub API at ${api} (${none.code})`, {
          hint: 'check the network, then run again; nothing was changed',
        });
      if (status === undefined) throw e;
      // 403 names the missing permission; GitHub answers 404 instead where it hides what the token may not see.
      if (status !== 403 && status !== 404)
        throw new OperationError(`${probeText} answered ${status} ${githubMessage(e)}`, {
          hint: 'GitHub may be having trouble (https://www.githubstatus.com); run again later',
        });
      results.push({ ...base, ok: false, status, message: githubMessage(e), accepted: acceptedPermissions(e) });
    }
  }
  for (const r of results) log.info(probeLine(r));
  const problems = explainPreflight(name, repo, results, web);
  if (problems.length > 0) {
    log.error(
      `the GitHub token cannot do everything this run needs (${results.filter((r) => !r.ok).length} permission(s) missing); nothing was changed:`,
    );
    throw new UsageError(problems);
  }
  return results;
}

/** One preflight line: `ok` when the probe proved the level, `read` when it proved read access only, else FAIL. */
export function probeLine(r: ProbeResult): string {
  const status = !r.ok ? 'FAIL' : r.need.probeLimit ? 'read' : 'ok  ';
  return `  ${status}  ${permissionLabel(r.need).padEnd(32)} ${r.request}${r.ok && r.need.probeLimit ? ` (${r.need.probeLimit})` : ''}`;
}

/** What --dry-run prints for the token check (no network). */
export function plannedTokenChecks(cfg: Config): string[] {
  const ref = repoRef(cfg);
  return requiredPermissions(cfg.get('CODEXK8S_MODE')).map(
    (p) =>
      `${permissionLabel(p).padEnd(32)} ${p.probe.method} ${p.probe.route.replace('{owner}', ref.owner).replace('{repo}', ref.repo)}${p.probeLimit ? ' (proves read only)' : ''}`,
  );
}
