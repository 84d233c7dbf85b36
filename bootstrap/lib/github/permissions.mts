// The fine-grained token permissions the steps need, by their names on GitHub's token page, with the request that
// proves each one; and GitHub's own names (x-accepted-github-permissions) turned into those page names.
// ------------------------------------------------------------------------------------------------
// Fine-grained token permissions

export type PermissionKey = 'metadata' | 'administration' | 'secrets' | 'variables' | 'webhooks' | 'actions';

export interface PermissionNeed {
  readonly key: PermissionKey;
  /** As the token settings page names it. */
  readonly name: string;
  readonly level: 'Read-only' | 'Read and write';
  /** The names GitHub uses for it in x-accepted-github-permissions. */
  readonly apiNames: readonly string[];
  readonly why: string;
  /** The request that proves the permission (the preflight sends it). */
  readonly probe: { readonly method: 'GET' | 'POST'; readonly route: string };
  /**
   * For a read probe of a Read-and-write need: what it proves and where write access shows first. Printed after
   * it, with the status `read` instead of `ok`, so a line never claims more than was checked.
   */
  readonly probeLimit?: string;
  readonly serverModeOnly?: boolean;
}

// No write request proves these without writing: GitHub's answer to a write of a name that does not exist (403 or
// 404) is not documented to check the permission first. So the preflight says what it proved, and no more.
const STEP70_WRITE = 'read ok; write not provable before step 70';

/**
 * What the bootstrap needs of the token, and the request that proves each permission. All probes but one are reads.
 * Administration is probed with POST .../runners/registration-token: it needs exactly "Administration: Read and
 * write" (what ARC needs to register runners), and its only effect is a registration token that expires after an
 * hour and registers nothing. A GET of .../actions/runners would pass with Read-only, and the missing write access
 * would then only show minutes later as a 403 in the listener's logs, inside the cluster.
 */
export const PERMISSIONS: readonly PermissionNeed[] = [
  {
    key: 'metadata',
    name: 'Metadata',
    level: 'Read-only',
    apiNames: ['metadata'],
    why: 'find the repository (every fine-grained token has it)',
    probe: { method: 'GET', route: '/repos/{owner}/{repo}' },
  },
  {
    key: 'administration',
    name: 'Administration',
    level: 'Read and write',
    apiNames: ['administration'],
    why: 'the runner scale set registers runners (ARC)',
    probe: { method: 'POST', route: '/repos/{owner}/{repo}/actions/runners/registration-token' },
  },
  {
    key: 'secrets',
    name: 'Secrets',
    level: 'Read and write',
    apiNames: ['secrets'],
    why: 'Actions secrets of the deploy workflow (70_github_repo)',
    probe: { method: 'GET', route: '/repos/{owner}/{repo}/actions/secrets/public-key' },
    probeLimit: STEP70_WRITE,
  },
  {
    key: 'variables',
    name: 'Variables',
    level: 'Read and write',
    apiNames: ['actions_variables', 'variables'],
    why: 'repository variables of the deploy workflow (70_github_repo)',
    probe: { method: 'GET', route: '/repos/{owner}/{repo}/actions/variables' },
    probeLimit: STEP70_WRITE,
  },
  {
    key: 'webhooks',
    name: 'Webhooks',
    level: 'Read and write',
    apiNames: ['repository_hooks'],
    why: 'the codex-k8s webhook (70_github_repo, server mode)',
    probe: { method: 'GET', route: '/repos/{owner}/{repo}/hooks' },
    probeLimit: STEP70_WRITE,
    serverModeOnly: true,
  },
  {
    key: 'actions',
    name: 'Actions',
    level: 'Read and write',
    apiNames: ['actions'],
    why: 'dispatch the deploy workflow and read its runs (80_deploy_loop_check)',
    probe: { method: 'GET', route: '/repos/{owner}/{repo}/actions/workflows' },
    probeLimit: 'read ok; write not provable before the dispatch in step 80',
  },
];

export function requiredPermissions(mode: string): PermissionNeed[] {
  return PERMISSIONS.filter((p) => !p.serverModeOnly || mode === 'server');
}

export function permissionLabel(p: PermissionNeed): string {
  return `${p.name}: ${p.level}`;
}

/** "administration=write" -> "Administration: Read and write"; unknown names are returned as GitHub wrote them. */
export function describeAccepted(header: string): string {
  return header
    .split(';')
    .map((set) =>
      set
        .split(',')
        .map((item) => {
          const [name = '', level = ''] = item.trim().split('=');
          const p = PERMISSIONS.find((x) => x.apiNames.includes(name));
          if (!p) return item.trim();
          return `${p.name}: ${level === 'write' || level === 'admin' ? 'Read and write' : 'Read-only'}`;
        })
        .join(' and '),
    )
    .join(' or ');
}
