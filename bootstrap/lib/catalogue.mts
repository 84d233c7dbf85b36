// The remote steps, in order. The order is the contract: each step may rely on every step before it.
// Each entry matches one executable file bootstrap/remote/<name>.mts (a test checks both ways).
// `checks` and `changes` are what --dry-run, --list and each step's --help print.

export interface StepInfo {
  readonly name: string;
  readonly title: string;
  readonly checks: readonly string[];
  readonly changes: readonly string[];
}

export const STEPS: readonly StepInfo[] = [
  {
    name: '00_preflight',
    title: 'Preflight: is this a server we can bootstrap?',
    checks: [
      'the OS is Ubuntu 24.04 (Debian 12 is accepted for the test sandbox)',
      'running as root; CPU architecture amd64 or arm64',
      'CPUs, memory (CODEXK8S_MIN_MEMORY_MIB, CODEXK8S_WARN_MEMORY_MIB) and free disk under /var/lib (CODEXK8S_MIN_DISK_GIB)',
      'cloud-init has finished and the apt/dpkg locks are free (waits up to CODEXK8S_PREFLIGHT_WAIT)',
      'ports 80, 443 and 6443 are free, or held by our own k3s on a re-run',
      'server mode: CODEXK8S_STAGING_DOMAIN resolves to an address of this server',
      'every host a later step downloads from answers over HTTPS (CODEXK8S_OUTBOUND_CHECK: fail, warn or skip)',
    ],
    changes: ['nothing'],
  },
  {
    name: '10_operator_user',
    title: 'Operator user with your SSH key and passwordless sudo',
    checks: [
      'user OPERATOR_USER exists with a home and /bin/bash',
      'OPERATOR_SSH_PUBKEY is in ~OPERATOR_USER/.ssh/authorized_keys (0600, owned by the user)',
      '/etc/sudoers.d/codex-k8s-operator grants NOPASSWD sudo (0440, validated with visudo)',
    ],
    changes: [
      'creates the user (useradd) when missing',
      'adds the key to authorized_keys; other keys there are kept',
      'writes the sudoers drop-in after `visudo -cf` accepts it',
    ],
  },
];

export function stepNames(): string[] {
  return STEPS.map((s) => s.name);
}

export function stepInfo(name: string): StepInfo {
  const s = STEPS.find((x) => x.name === name);
  if (!s) throw new Error(`no step named ${name} in bootstrap/lib/catalogue.mts`);
  return s;
}
