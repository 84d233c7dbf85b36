// Configuration: one typed schema for every setting, loaded from .env (dotenv) and the environment,
// validated all at once. Adding a setting is one entry in SETTINGS; .env.example and
// docs/configuration.md are generated from it (bootstrap/host/gen_config_docs.mts).
//
// Names follow the existing codex-k8s bash bootstrap (TARGET_*, OPERATOR_*, CODEXK8S_*), so its users'
// config.env files keep working. New settings take the CODEXK8S_ prefix.
import { readFileSync, existsSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isIPv4, isIPv6 } from 'node:net';
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { parse as parseDotenv } from 'dotenv';
import { registerSecret } from './redact.mts';
import { parseSshExtraOptions, parseJumpHost, formatJumpHost } from './ssh_options.mts';
import { IMAGES } from './versions.mts';

export type Scope = 'host' | 'server' | 'both';
export type Kind =
  | 'string'
  | 'int'
  | 'bool'
  | 'port'
  | 'host'
  | 'email'
  | 'domain'
  | 'repo'
  | 'duration'
  | 'url'
  | 'enum'
  | 'path'
  | 'username'
  | 'dnsLabel'
  | 'sshPublicKey'
  | 'githubToken'
  | 'sshOptions'
  | 'sshJump'
  | 'sha256Overrides'
  | 'cidr'
  | 'cidrList'
  | 'cron'
  | 'image'
  | 'ageRecipient';

export type Value = string | number | boolean | readonly string[] | Readonly<Record<string, string>>;
type Values = Record<string, Value | undefined>;

export interface Setting {
  readonly name: string;
  readonly group: string;
  readonly kind: Kind;
  readonly description: string;
  /** A literal default, or one computed from the settings parsed before this one. */
  readonly default?: string | ((v: Values) => string | undefined);
  /** Shown in docs when the default is computed. */
  readonly defaultText?: string;
  readonly required?: boolean | ((v: Values) => boolean);
  /** Shown in docs and errors when `required` is a function. */
  readonly requiredText?: string;
  readonly secret?: boolean;
  /** host: used on the laptop only (never uploaded); server: used by the remote steps; both. */
  readonly scope: Scope;
  readonly min?: number;
  readonly max?: number;
  readonly values?: readonly string[];
  /** Value written into .env.example (commented out when absent). */
  readonly example?: string;
}

const GROUPS = {
  target: 'Target server and SSH',
  operator: 'Operator user',
  github: 'GitHub repository',
  staging: 'Staging environment',
  runner: 'GitHub Actions runners',
  host: 'Host hardening',
  limits: 'Preflight thresholds',
  timing: 'Timeouts and locks',
  artifacts: 'Downloads',
  postgres: 'PostgreSQL',
  backup: 'Backups (--backup, --restore-from)',
  local: 'Launcher (laptop side)',
} as const;

/** An age recipient as `age-keygen -y` prints it: X25519 (`age1` + 58 bech32 characters) or hybrid (`age1pq1...`). */
const AGE_RECIPIENT = /^age1(?:pq1[02-9ac-hj-np-z]{100,}|[02-9ac-hj-np-z]{58})$/;

const isLocal = (v: Values) => v['CODEXK8S_MODE'] === 'local';
const isServer = (v: Values) => v['CODEXK8S_MODE'] === 'server';

const SCHEMA = [
  // --- target -------------------------------------------------------------------------------------
  {
    name: 'TARGET_HOST',
    group: GROUPS.target,
    kind: 'host',
    scope: 'host',
    required: true,
    example: '203.0.113.10',
    description:
      'Address or DNS name of the server to bootstrap (a fresh Ubuntu 24.04). An IPv6 address may be given bare or in brackets.',
  },
  {
    name: 'TARGET_PORT',
    group: GROUPS.target,
    kind: 'port',
    scope: 'host',
    default: '22',
    description: 'SSH port of the server as it is now (before hardening).',
  },
  {
    name: 'TARGET_ROOT_USER',
    group: GROUPS.target,
    kind: 'username',
    scope: 'host',
    default: 'root',
    description:
      "User the launcher logs in as: root, or a user with passwordless sudo (a cloud image's ubuntu, admin or azureuser), whose every server-side command then runs through sudo -n. A sudo that asks for a password is refused before anything changes (exit 2). After hardening, a new login as this user must still work, or the change is rolled back.",
  },
  {
    name: 'TARGET_ROOT_SSH_KEY',
    group: GROUPS.target,
    kind: 'path',
    scope: 'host',
    default: '~/.ssh/id_ed25519',
    description: 'Private key for that login (stays on the laptop).',
  },
  {
    name: 'CODEXK8S_SSH_EXTRA_OPTS',
    group: GROUPS.target,
    kind: 'sshOptions',
    scope: 'host',
    example: '-o ServerAliveInterval=30',
    description:
      'Extra ssh options, space-separated: -o Key=Value (or -oKey=Value, -o Key Value) with Ciphers, MACs, ' +
      'KexAlgorithms, ConnectTimeout, ConnectionAttempts, ServerAliveInterval, ServerAliveCountMax, TCPKeepAlive, Compression, AddressFamily ' +
      'or IPQoS; or -c, -m, -4, -6, -C. Anything else (other keys, known-hosts or control options, ProxyJump and -J: use CODEXK8S_SSH_JUMP, ' +
      '-p, -l, -i, -F, -S, a bare word) is refused by name: the launcher pins the host key and owns the destination and the shared connection.',
  },
  {
    name: 'CODEXK8S_SSH_JUMP',
    group: GROUPS.target,
    kind: 'sshJump',
    scope: 'host',
    example: 'ops@bastion.example.com:22',
    description:
      "A jump host (bastion) to reach the server through: [user@]host[:port]. Its host key is pinned like the server's, in the tool's own known_hosts (a later change stops the run), and the login checks after hardening go through it too. Unset: a ProxyJump that ~/.ssh/config gives for the server is used the same way.",
  },
  {
    name: 'CODEXK8S_SSH_JUMP_KEY',
    group: GROUPS.target,
    kind: 'path',
    scope: 'host',
    default: (v) => (typeof v['TARGET_ROOT_SSH_KEY'] === 'string' ? v['TARGET_ROOT_SSH_KEY'] : undefined),
    defaultText: 'TARGET_ROOT_SSH_KEY',
    description:
      'Private key for the login on the jump host (stays on the laptop); keys that ~/.ssh/config names for that host are offered too.',
  },
  {
    name: 'CODEXK8S_SSH_PORT',
    group: GROUPS.target,
    kind: 'port',
    scope: 'both',
    default: '22',
    description: 'SSH port the server should listen on after hardening.',
  },

  // --- operator -----------------------------------------------------------------------------------
  {
    name: 'OPERATOR_USER',
    group: GROUPS.operator,
    kind: 'username',
    scope: 'server',
    default: 'codex',
    description:
      'Unprivileged user created on the server for day-to-day work, with passwordless sudo and your key. root and system accounts are refused; an existing account this tool did not create only with OPERATOR_ADOPT_EXISTING=true.',
  },
  {
    name: 'OPERATOR_ADOPT_EXISTING',
    group: GROUPS.operator,
    kind: 'bool',
    scope: 'server',
    default: 'false',
    description:
      'true: OPERATOR_USER may be an existing regular account (uid 1000 or more) that this tool did not create; step 10 gives it a bash login shell, your key and passwordless sudo. Never root or a system account.',
  },
  {
    name: 'OPERATOR_SSH_PUBKEY_PATH',
    group: GROUPS.operator,
    kind: 'path',
    scope: 'host',
    default: '~/.ssh/id_ed25519.pub',
    description: 'Public key (on the laptop) installed for the operator user. Ignored when OPERATOR_SSH_PUBKEY is set.',
  },
  {
    name: 'OPERATOR_SSH_PUBKEY',
    group: GROUPS.operator,
    kind: 'sshPublicKey',
    scope: 'server',
    defaultText: 'read from OPERATOR_SSH_PUBKEY_PATH',
    description:
      'The operator public key itself (one line). Normally left empty: the launcher reads OPERATOR_SSH_PUBKEY_PATH.',
  },
  {
    name: 'OPERATOR_SSH_KEY',
    group: GROUPS.operator,
    kind: 'path',
    scope: 'host',
    default: (v) =>
      typeof v['OPERATOR_SSH_PUBKEY_PATH'] === 'string'
        ? v['OPERATOR_SSH_PUBKEY_PATH'].replace(/\.pub$/, '')
        : undefined,
    defaultText: 'OPERATOR_SSH_PUBKEY_PATH without .pub',
    description:
      'Private key of the operator (stays on the laptop). After an sshd or firewall change the launcher logs in with it over a new connection; when that fails, the change is rolled back.',
  },

  // --- github -------------------------------------------------------------------------------------
  {
    name: 'CODEXK8S_GITHUB_REPO',
    group: GROUPS.github,
    kind: 'repo',
    scope: 'both',
    required: true,
    example: 'codex-k8s/codex-k8s',
    description: 'The GitHub repository that deploys to this staging, as owner/name.',
  },
  {
    name: 'CODEXK8S_GITHUB_PAT',
    group: GROUPS.github,
    kind: 'githubToken',
    scope: 'both',
    required: true,
    secret: true,
    description:
      'Fine-grained personal access token for that repository (see README for the permissions). Prompted for on a terminal when empty.',
  },
  {
    name: 'CODEXK8S_GITHUB_API_URL',
    group: GROUPS.github,
    kind: 'url',
    scope: 'both',
    default: 'https://api.github.com',
    description: 'GitHub REST API base URL (change for GitHub Enterprise Server).',
  },
  {
    name: 'CODEXK8S_GITHUB_URL',
    group: GROUPS.github,
    kind: 'url',
    scope: 'both',
    default: 'https://github.com',
    description: 'GitHub web URL, used for the runner registration URL (change for GitHub Enterprise Server).',
  },
  {
    name: 'CODEXK8S_GITHUB_WEBHOOK_EVENTS',
    group: GROUPS.github,
    kind: 'string',
    scope: 'both',
    default: 'push,pull_request,issues,issue_comment',
    description: 'Events the codex-k8s repository webhook receives (server mode), comma-separated GitHub event names.',
  },

  // --- staging ------------------------------------------------------------------------------------
  {
    name: 'CODEXK8S_STAGING_DOMAIN',
    group: GROUPS.staging,
    kind: 'domain',
    scope: 'both',
    required: isServer,
    requiredText: 'in server mode',
    example: 'staging.example.com',
    description:
      'Public DNS name of staging; it must resolve to the server. Setting it selects server mode (TLS, autoscaled runners).',
  },
  {
    name: 'CODEXK8S_MODE',
    group: GROUPS.staging,
    kind: 'enum',
    scope: 'both',
    values: ['local', 'server'],
    default: (v) => (v['CODEXK8S_STAGING_DOMAIN'] ? 'server' : 'local'),
    defaultText: 'server when CODEXK8S_STAGING_DOMAIN is set, otherwise local',
    description:
      "local: plain HTTP on the server address, one persistent runner. server: a domain with Let's Encrypt TLS and an autoscaled runner scale set.",
  },
  {
    name: 'CODEXK8S_STAGING_NAMESPACE',
    group: GROUPS.staging,
    kind: 'dnsLabel',
    scope: 'both',
    default: 'codex-k8s-staging',
    description: 'Kubernetes namespace of the staging service and PostgreSQL.',
  },
  {
    name: 'CODEXK8S_LETSENCRYPT_EMAIL',
    group: GROUPS.staging,
    kind: 'email',
    scope: 'both',
    required: isServer,
    requiredText: 'in server mode',
    example: 'ops@example.com',
    description: "Contact e-mail for the Let's Encrypt account (expiry notices).",
  },
  {
    name: 'CODEXK8S_LETSENCRYPT_SERVER',
    group: GROUPS.staging,
    kind: 'enum',
    scope: 'both',
    values: ['production', 'staging'],
    default: 'production',
    description:
      "Let's Encrypt endpoint. Use staging while experimenting: production allows 5 certificates per name set per week.",
  },
  {
    name: 'CODEXK8S_INTERNAL_REGISTRY_PORT',
    group: GROUPS.staging,
    kind: 'port',
    scope: 'both',
    default: '5000',
    description: "Node port of the in-cluster image registry (reached by containerd through the node's loopback).",
  },
  {
    name: 'CODEXK8S_BUILDKIT_USERNS',
    group: GROUPS.staging,
    kind: 'enum',
    scope: 'both',
    values: ['sysctl', 'apparmor'],
    defaultText: 'unset: refuse on a kernel that restricts unprivileged user namespaces (Ubuntu 24.04)',
    description:
      "How rootless BuildKit gets its user namespace where kernel.apparmor_restrict_unprivileged_userns=1: sysctl sets it to 0 (/etc/sysctl.d, host-wide, BuildKit's documented fix); apparmor loads a Localhost AppArmor profile with userns for the BuildKit pod only. Unset, preflight and 50_deploy_codex_k8s refuse on such a kernel.",
  },
  {
    name: 'CODEXK8S_SMOKE_URL',
    group: GROUPS.staging,
    kind: 'url',
    scope: 'both',
    example: 'http://10.0.0.5:8080',
    defaultText:
      'https://CODEXK8S_STAGING_DOMAIN in server mode; in local mode http://<ClusterIP of the Traefik Service>',
    description:
      'Where 80_deploy_loop_check sends the smoke checks from the server. Normally left empty; set it when the server cannot reach staging at the default address.',
  },

  // --- runners ------------------------------------------------------------------------------------
  {
    name: 'CODEXK8S_RUNNER_NAMESPACE',
    group: GROUPS.runner,
    kind: 'dnsLabel',
    scope: 'both',
    default: 'arc-runners',
    description: 'Namespace of the GitHub Actions runner scale set.',
  },
  {
    name: 'CODEXK8S_RUNNER_SCALE_SET_NAME',
    group: GROUPS.runner,
    kind: 'dnsLabel',
    scope: 'both',
    default: 'codex-k8s-staging',
    description: 'Name of the runner scale set; workflows use it in runs-on.',
  },
  {
    name: 'CODEXK8S_RUNNER_MIN',
    group: GROUPS.runner,
    kind: 'int',
    scope: 'both',
    min: 0,
    max: 20,
    default: (v) => (isLocal(v) ? '1' : '0'),
    defaultText: '1 in local mode, 0 in server mode',
    description: 'Minimum number of runners kept online.',
  },
  {
    name: 'CODEXK8S_RUNNER_IMAGE',
    group: GROUPS.runner,
    kind: 'image',
    scope: 'both',
    default: IMAGES.arcRunner,
    description:
      'The GitHub Actions runner image of the scale set. ARC runners never update themselves, and GitHub stops queueing jobs to a runner 30 days after a newer actions/runner release: the launcher checks the releases and refuses (exit 2) a runner past that limit. Set this to bump it before the pin in bootstrap/lib/versions.mts is bumped (a mirror of the image works too).',
  },
  {
    name: 'CODEXK8S_RUNNER_MAX',
    group: GROUPS.runner,
    kind: 'int',
    scope: 'both',
    min: 1,
    max: 50,
    default: (v) => (isLocal(v) ? '1' : '3'),
    defaultText: '1 in local mode, 3 in server mode',
    description: 'Maximum number of runners.',
  },

  // --- host hardening -----------------------------------------------------------------------------
  {
    name: 'CODEXK8S_FIREWALL_ENABLED',
    group: GROUPS.host,
    kind: 'bool',
    scope: 'both',
    default: 'true',
    description:
      'Manage an nftables firewall (SSH, 80 and 443 inbound only). false removes the table and unit this bootstrap installed.',
  },
  {
    name: 'CODEXK8S_POD_CIDR',
    group: GROUPS.host,
    kind: 'cidr',
    scope: 'both',
    default: '10.42.0.0/16',
    description:
      'The k3s pod network (--cluster-cidr); the firewall lets it reach the host (CoreDNS, metrics). Fixed once k3s is installed: change it only before the first run.',
  },
  {
    name: 'CODEXK8S_SERVICE_CIDR',
    group: GROUPS.host,
    kind: 'cidr',
    scope: 'both',
    default: '10.43.0.0/16',
    description:
      'The k3s service network (--service-cidr); the firewall lets it reach the host. Fixed once k3s is installed: change it only before the first run.',
  },
  {
    name: 'CODEXK8S_KUBE_API_ALLOW',
    group: GROUPS.host,
    kind: 'cidrList',
    scope: 'both',
    example: '198.51.100.7/32',
    description:
      'Addresses (CIDRs, comma- or space-separated) allowed to reach the Kubernetes API on 6443. Empty: 6443 is not reachable from outside.',
  },
  {
    name: 'CODEXK8S_SSH_MAX_AUTH_TRIES',
    group: GROUPS.host,
    kind: 'int',
    scope: 'both',
    min: 1,
    max: 10,
    default: '3',
    description: 'sshd MaxAuthTries. Keep it at least the number of keys your ssh agent offers.',
  },
  {
    name: 'CODEXK8S_AUTO_REBOOT',
    group: GROUPS.host,
    kind: 'bool',
    scope: 'both',
    default: 'false',
    description: 'Let unattended-upgrades reboot the server when an update needs it (Automatic-Reboot).',
  },
  {
    name: 'CODEXK8S_LOCKOUT_ROLLBACK_AFTER',
    group: GROUPS.host,
    kind: 'duration',
    scope: 'both',
    default: '3m',
    description:
      'After an sshd or firewall change, undo it automatically this long later unless a new login confirmed it (the launcher confirms within seconds).',
  },

  // --- thresholds ---------------------------------------------------------------------------------
  {
    name: 'CODEXK8S_MIN_MEMORY_MIB',
    group: GROUPS.limits,
    kind: 'int',
    scope: 'both',
    min: 0,
    max: 1048576,
    default: '2048',
    description: 'Preflight fails below this much memory (MiB).',
  },
  {
    name: 'CODEXK8S_WARN_MEMORY_MIB',
    group: GROUPS.limits,
    kind: 'int',
    scope: 'both',
    min: 0,
    max: 1048576,
    default: '4096',
    description: 'Preflight warns below this much memory (MiB).',
  },
  {
    name: 'CODEXK8S_MIN_DISK_GIB',
    group: GROUPS.limits,
    kind: 'int',
    scope: 'both',
    min: 0,
    max: 1048576,
    default: '15',
    description: 'Preflight fails when /var/lib has less free space than this (GiB).',
  },
  {
    name: 'CODEXK8S_OUTBOUND_CHECK',
    group: GROUPS.limits,
    kind: 'enum',
    scope: 'both',
    values: ['fail', 'warn', 'skip'],
    default: 'fail',
    description:
      'What preflight does when a host the later steps download from is unreachable over HTTPS: fail, warn (an air-gapped server with a mirror and preloaded images), or skip the probes.',
  },

  // --- timing -------------------------------------------------------------------------------------
  {
    name: 'CODEXK8S_ROLLOUT_TIMEOUT',
    group: GROUPS.timing,
    kind: 'duration',
    scope: 'both',
    default: '5m',
    description: 'How long to wait for a Kubernetes rollout (e.g. 90s, 5m, 1h).',
  },
  {
    name: 'CODEXK8S_BUILD_TIMEOUT',
    group: GROUPS.timing,
    kind: 'duration',
    scope: 'both',
    default: '15m',
    description:
      'How long 50_deploy_codex_k8s lets the first image build (BuildKit in the cluster: base image pull, npm ci, push) take.',
  },
  {
    name: 'CODEXK8S_PREFLIGHT_WAIT',
    group: GROUPS.timing,
    kind: 'duration',
    scope: 'both',
    default: '10m',
    description:
      'How long preflight waits for cloud-init to finish and for the apt/dpkg locks to be released on a fresh server.',
  },
  {
    name: 'CODEXK8S_DEPLOY_WAIT',
    group: GROUPS.timing,
    kind: 'duration',
    scope: 'both',
    default: '15m',
    description:
      'How long 80_deploy_loop_check waits for the staging-deploy run it dispatched to finish (queued behind another deploy, build, rollout and smoke checks).',
  },
  {
    name: 'CODEXK8S_LOCK_STALE_AFTER',
    group: GROUPS.timing,
    kind: 'duration',
    scope: 'both',
    default: '2h',
    description:
      'A server lock that records no holder process (written by an older version of this tool) is taken over once older than this. A lock whose holder process is gone is taken over at once, whatever its age.',
  },

  // --- postgres -----------------------------------------------------------------------------------
  {
    name: 'CODEXK8S_POSTGRES_BACKUP_SCHEDULE',
    group: GROUPS.postgres,
    kind: 'cron',
    scope: 'both',
    default: '17 3 * * *',
    description:
      "When the backup CronJob runs pg_dump (five cron fields, in the server's time zone, UTC on a fresh server).",
  },
  {
    name: 'CODEXK8S_POSTGRES_BACKUP_KEEP',
    group: GROUPS.postgres,
    kind: 'int',
    scope: 'both',
    min: 1,
    max: 365,
    default: '7',
    description: 'How many pg_dump files the backup volume keeps; older ones are removed after each successful dump.',
  },

  // --- backups ------------------------------------------------------------------------------------
  {
    name: 'CODEXK8S_BACKUP_AGE_RECIPIENT',
    group: GROUPS.backup,
    kind: 'ageRecipient',
    // both: 70_github_repo hands it to the nightly backup workflow as a repository variable (a public key).
    scope: 'both',
    example: 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p',
    description:
      'The age public key (age1...) that backup bundles are encrypted to: by --backup, and by the nightly staging-backup workflow, which runs only when this is set (70_github_repo makes it a repository variable). Unset: --backup asks for a passphrase on the terminal, and there are no nightly backups. Keep the matching secret key off the server: it is what --restore-from needs.',
  },
  {
    name: 'CODEXK8S_BACKUP_RETENTION_DAYS',
    group: GROUPS.backup,
    kind: 'int',
    scope: 'both',
    min: 1,
    max: 90,
    default: '30',
    description:
      "Days GitHub keeps each nightly backup artifact (staging-backup.yml, upload-artifact retention-days; the repository's own limit still applies). Only used with CODEXK8S_BACKUP_AGE_RECIPIENT.",
  },
  {
    name: 'CODEXK8S_BACKUP_AGE_IDENTITY_FILE',
    group: GROUPS.backup,
    kind: 'path',
    scope: 'host',
    example: '~/.config/codex-k8s/backup-key.txt',
    description:
      'The age secret key file (as age-keygen writes it) that opens bundles for --restore-from. Unset: --restore-from asks for the passphrase on the terminal.',
  },

  // --- artifacts ----------------------------------------------------------------------------------
  {
    name: 'CODEXK8S_ARTIFACT_MIRROR',
    group: GROUPS.artifacts,
    kind: 'url',
    scope: 'both',
    example: 'https://mirror.example.com/codex-k8s',
    description:
      'Download every pinned artifact from this mirror instead of its vendor, as MIRROR/<name>/<file> (e.g. node/node-v24.19.0-linux-x64.tar.xz). Checksums are still enforced.',
  },
  {
    name: 'CODEXK8S_ARTIFACT_SHA256_OVERRIDES',
    group: GROUPS.artifacts,
    kind: 'sha256Overrides',
    scope: 'both',
    example: 'node:x64=<sha256>',
    description:
      'Replace pinned sha256 sums, as name:arch=sha256 separated by commas. Only for a mirror that serves rebuilt artifacts; every override is printed as a warning.',
  },

  // --- launcher -----------------------------------------------------------------------------------
  {
    name: 'CODEXK8S_HOST_STATE_DIR',
    group: GROUPS.local,
    kind: 'path',
    scope: 'host',
    default: '.bootstrap-state',
    description: 'Where the launcher keeps per-server state on the laptop (the pinned SSH host keys).',
  },
  {
    name: 'CODEXK8S_HOST_LOG_DIR',
    group: GROUPS.local,
    kind: 'path',
    scope: 'host',
    default: '.bootstrap-logs',
    description: 'Where the launcher writes its log file, one per run.',
  },
] as const satisfies readonly Setting[];

/** The schema as plain Setting records (for code that walks all of them); the types below come from SCHEMA. */
export const SETTINGS: readonly Setting[] = SCHEMA;

export const SETTING_BY_NAME: ReadonlyMap<string, Setting> = new Map(SETTINGS.map((s) => [s.name, s]));

// ------------------------------------------------------------------------------------------------
// Parsing of single values. Each returns the value or a reason and what is expected.

type Parsed = { ok: true; value: Value } | { ok: false; why: string; expected: string };

const HOSTNAME =
  /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const USERNAME = /^[a-z_][a-z0-9_-]{0,31}$/;
/** Fully qualified (a registry host first), a version tag, optionally a digest: what the runner-freshness check can read. */
const IMAGE_REF =
  /^[a-z0-9]+(?:[.-][a-z0-9]+)*(?::\d{1,5})?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+:\d+\.\d+\.\d+(?:@sha256:[a-f0-9]{64})?$/;
// A conservative addr-spec (RFC 5322 dot-atom, letters, digits and . _ % + - only): the address goes into YAML and
// shell-facing files, so quotes, `$(...)`, spaces and backticks are refused rather than escaped.
const EMAIL = /^[A-Za-z0-9_%+-]+(\.[A-Za-z0-9_%+-]+)*@([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$/;
const REPO = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})\/[A-Za-z0-9._-]{1,100}$/;
const SSH_KEY_TYPES = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
];

/** "10.42.0.0/16" or "2001:db8::/64" (a bare address gets /32 or /128); undefined when it is not one. */
export function parseCidr(raw: string): string | undefined {
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(raw.trim());
  if (!m) return undefined;
  const addr = m[1] as string;
  const v6 = addr.includes(':');
  // node:net's parser, not a character class: `:::::` and `999.1.1.1` are no addresses.
  if (!(v6 ? isIPv6(addr) : isIPv4(addr))) return undefined;
  const bits = m[2] === undefined ? (v6 ? 128 : 32) : Number(m[2]);
  if (bits > (v6 ? 128 : 32)) return undefined;
  return `${addr.toLowerCase()}/${bits}`;
}

export function parseDuration(raw: string): number | undefined {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(raw.trim());
  if (!m || raw.trim() === '') {
    return /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : undefined;
  }
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

export function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? homedir() + p.slice(1) : p;
}

/**
 * One setting's value given outside a settings file (the nightly backup's environment), checked by the schema's
 * own rule: the problem as the settings file would report it (`NAME: why; expected ...`), or undefined.
 */
export function settingProblem(name: SettingName, raw: string | undefined): string | undefined {
  const s = SCHEMA.find((x) => x.name === name) as Setting;
  if (raw === undefined || raw.trim() === '') {
    const empty = parseValue(s, ''); // what the rule expects, in its own words
    return `${name}: not set; expected ${empty.ok ? 'a value' : empty.expected}`;
  }
  const parsed = parseValue(s, raw.trim());
  return parsed.ok ? undefined : `${name}: ${parsed.why}; expected ${parsed.expected}`;
}

function parseValue(s: Setting, raw: string): Parsed {
  const shown = s.secret ? 'the value (hidden)' : JSON.stringify(raw);
  switch (s.kind) {
    case 'string':
      return { ok: true, value: raw };
    case 'int': {
      if (!/^-?\d+$/.test(raw))
        return { ok: false, why: `${shown} is not a whole number`, expected: `an integer from ${s.min} to ${s.max}` };
      const n = Number(raw);
      if ((s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max))
        return { ok: false, why: `${shown} is out of range`, expected: `an integer from ${s.min} to ${s.max}` };
      return { ok: true, value: n };
    }
    case 'port': {
      if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535)
        return { ok: false, why: `${shown} is not a valid port`, expected: 'an integer from 1 to 65535' };
      return { ok: true, value: Number(raw) };
    }
    case 'bool': {
      const v = raw.toLowerCase();
      if (['true', 'yes', '1', 'on'].includes(v)) return { ok: true, value: true };
      if (['false', 'no', '0', 'off'].includes(v)) return { ok: true, value: false };
      return { ok: false, why: `${shown} is not a boolean`, expected: 'true or false' };
    }
    case 'host': {
      const h = raw.replace(/^\[(.*)\]$/, '$1');
      // A DNS name's last label is never all digits (RFC 3696 2.), so `999.1.1.1` is a bad address, not a name.
      if (isIPv4(h) || isIPv6(h) || (HOSTNAME.test(h) && /[a-zA-Z]/.test(h.split('.').pop() ?? '')))
        return { ok: true, value: h };
      return {
        ok: false,
        why: `${shown} is not a host name or IP address`,
        expected: 'e.g. 203.0.113.10 or server.example.com (no user@, no port, no scheme)',
      };
    }
    case 'domain': {
      if (HOSTNAME.test(raw) && raw.includes('.') && !IPV4.test(raw) && /[a-zA-Z]/.test(raw.split('.').pop() ?? ''))
        return { ok: true, value: raw.toLowerCase() };
      return {
        ok: false,
        why: `${shown} is not a fully qualified domain name`,
        expected: 'a DNS name such as staging.example.com (no scheme, no path, not an IP address)',
      };
    }
    case 'email':
      return EMAIL.test(raw)
        ? { ok: true, value: raw }
        : { ok: false, why: `${shown} is not an e-mail address`, expected: 'an address such as ops@example.com' };
    case 'repo':
      // GitHub's own rules: a name is never `.` or `..`, and a trailing `.git` is the clone URL, not the name.
      return REPO.test(raw) && !/\/\.{1,2}$/.test(raw) && !/\.git$/i.test(raw)
        ? { ok: true, value: raw }
        : {
            ok: false,
            why: `${shown} is not a repository`,
            expected: 'owner/name, e.g. codex-k8s/codex-k8s (no URL, no .git)',
          };
    case 'duration': {
      const d = parseDuration(raw);
      if (d === undefined || d <= 0)
        return { ok: false, why: `${shown} is not a duration`, expected: 'a positive duration such as 90s, 5m, 1h30m' };
      return { ok: true, value: d };
    }
    case 'url': {
      try {
        const u = new URL(raw);
        if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error();
        return { ok: true, value: raw.replace(/\/+$/, '') };
      } catch {
        return { ok: false, why: `${shown} is not an http(s) URL`, expected: 'a URL such as https://example.com/path' };
      }
    }
    case 'enum':
      return s.values?.includes(raw)
        ? { ok: true, value: raw }
        : { ok: false, why: `${shown} is not allowed`, expected: `one of: ${s.values?.join(', ')}` };
    case 'path':
      return raw.includes('\0') || raw.trim() === ''
        ? { ok: false, why: `${shown} is not a path`, expected: 'a file system path' }
        : { ok: true, value: expandHome(raw) };
    case 'username':
      return USERNAME.test(raw)
        ? { ok: true, value: raw }
        : {
            ok: false,
            why: `${shown} is not a valid Linux user name`,
            expected: 'lower-case letters, digits, _ or -, starting with a letter or _, at most 32 characters',
          };
    case 'ageRecipient':
      return AGE_RECIPIENT.test(raw.trim())
        ? { ok: true, value: raw.trim() }
        : {
            ok: false,
            why: raw.startsWith('AGE-SECRET-KEY') ? 'this is an age SECRET key' : `${shown} is not an age recipient`,
            expected:
              'the public key age-keygen prints (age1... : `age-keygen -y KEYFILE`); the secret key stays off the server',
          };
    case 'image':
      return IMAGE_REF.test(raw)
        ? { ok: true, value: raw }
        : {
            ok: false,
            why: `${shown} is not an image reference with a version tag`,
            expected:
              'REGISTRY/REPOSITORY:X.Y.Z, optionally @sha256:<64 hex digits>, such as ghcr.io/actions/actions-runner:2.336.0',
          };
    case 'dnsLabel':
      return DNS_LABEL.test(raw)
        ? { ok: true, value: raw }
        : {
            ok: false,
            why: `${shown} is not a valid Kubernetes name`,
            expected: 'a DNS label: lower-case letters, digits and -, at most 63 characters',
          };
    case 'sshPublicKey': {
      const parts = raw.trim().split(/\s+/);
      if (
        parts.length >= 2 &&
        SSH_KEY_TYPES.includes(parts[0] ?? '') &&
        /^[A-Za-z0-9+/]+={0,3}$/.test(parts[1] ?? '') &&
        !raw.includes('\n')
      )
        return { ok: true, value: raw.trim() };
      if (raw.includes('PRIVATE KEY'))
        return { ok: false, why: 'this is a PRIVATE key', expected: 'the public key (the .pub file)' };
      return {
        ok: false,
        why: 'not an OpenSSH public key',
        expected: `one line "TYPE BASE64 [comment]" with TYPE one of ${SSH_KEY_TYPES.slice(0, 3).join(', ')}, ...`,
      };
    }
    case 'githubToken': {
      if (/^github_pat_[A-Za-z0-9_]{20,}$/.test(raw) || /^gh[ps]_[A-Za-z0-9]{20,}$/.test(raw))
        return { ok: true, value: raw };
      return {
        ok: false,
        why: `${shown} does not look like a GitHub token`,
        expected: 'a fine-grained personal access token (github_pat_...)',
      };
    }
    case 'sshOptions':
      return parseSshExtraOptions(raw);
    case 'sshJump': {
      const j = parseJumpHost(raw.trim());
      return j.ok ? { ok: true, value: formatJumpHost(j.value) } : j;
    }
    case 'cron': {
      const fields = raw.trim().split(/\s+/);
      if (fields.length === 5 && fields.every((f) => /^[0-9*/,\-A-Za-z]+$/.test(f)))
        return { ok: true, value: fields.join(' ') };
      return {
        ok: false,
        why: `${shown} is not a cron schedule`,
        expected: 'five cron fields (minute hour day-of-month month day-of-week), e.g. "17 3 * * *"',
      };
    }
    case 'cidr': {
      const c = parseCidr(raw);
      return c
        ? { ok: true, value: c }
        : {
            ok: false,
            why: `${shown} is not a CIDR`,
            expected: 'an address with a prefix length, e.g. 10.42.0.0/16 or 2001:db8::/64',
          };
    }
    case 'cidrList': {
      const items = raw.split(/[\s,]+/).filter(Boolean);
      const out: string[] = [];
      for (const item of items) {
        const c = parseCidr(item);
        if (!c)
          return {
            ok: false,
            why: `${JSON.stringify(item)} is not a CIDR`,
            expected: 'CIDRs separated by commas or spaces, e.g. 198.51.100.7/32,203.0.113.0/24',
          };
        out.push(c);
      }
      return { ok: true, value: out };
    }
    case 'sha256Overrides': {
      const out: Record<string, string> = {};
      for (const item of raw
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean)) {
        const m = /^([a-z0-9-]+):(x64|arm64)=([0-9a-f]{64})$/.exec(item);
        if (!m)
          return {
            ok: false,
            why: `${JSON.stringify(item)} is not an override`,
            expected: 'name:arch=<64 hex digits>, comma-separated, e.g. node:x64=60e3...89a8',
          };
        out[`${m[1]}:${m[2]}`] = m[3] ?? '';
      }
      return { ok: true, value: out };
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Loading

export interface LoadOptions {
  /** The .env file; when `explicit`, a missing file is an error. */
  envFile?: string;
  explicitEnvFile?: boolean;
  /** Which side is loading: the laptop validates host and shared settings, the server only what it uses. */
  side: 'host' | 'server';
  /** Values that win over the file (normally process.env). */
  env?: Record<string, string | undefined>;
  /** false for --dry-run: missing secrets are listed, not errors; unreadable files are warnings. */
  strict?: boolean;
}

export interface LoadResult {
  config: Config;
  problems: string[];
  warnings: string[];
  /** Secret settings that are required but empty (prompted for on a TTY). */
  missingSecrets: string[];
  /** Where each value came from, for --verbose and docs: 'env', 'file', 'default', 'derived'. */
  sources: Record<string, string>;
}

/** The value each kind parses to (parseValue). */
interface KindValues {
  string: string;
  int: number;
  bool: boolean;
  port: number;
  host: string;
  email: string;
  domain: string;
  repo: string;
  duration: number;
  url: string;
  enum: string;
  path: string;
  username: string;
  dnsLabel: string;
  sshPublicKey: string;
  githubToken: string;
  sshOptions: readonly string[];
  sshJump: string;
  sha256Overrides: Readonly<Record<string, string>>;
  cidr: string;
  cidrList: readonly string[];
  cron: string;
  image: string;
  ageRecipient: string;
}

/** Every setting's name: `cfg.get('CODEXK8S_SSH_PROT')` does not compile. */
export type SettingName = (typeof SCHEMA)[number]['name'];
type SettingOf<N extends SettingName> = Extract<(typeof SCHEMA)[number], { readonly name: N }>;
/** The typed value of a setting: from its kind, and for an enum the union of its values. */
export type SettingValue<N extends SettingName> =
  SettingOf<N> extends { readonly kind: 'enum'; readonly values: readonly (infer V)[] }
    ? V
    : KindValues[SettingOf<N>['kind']];

export type Config = Readonly<Record<string, Value | undefined>> & {
  get<N extends SettingName>(name: N): SettingValue<N>;
  maybe<N extends SettingName>(name: N): SettingValue<N> | undefined;
};

function makeConfig(values: Values): Config {
  const c = { ...values } as Record<string, unknown>;
  Object.defineProperty(c, 'get', {
    enumerable: false,
    value: (name: string) => {
      if (!SETTING_BY_NAME.has(name)) throw new Error(`unknown setting ${name}`);
      const v = values[name];
      if (v === undefined) throw new Error(`setting ${name} is not set`);
      return v;
    },
  });
  Object.defineProperty(c, 'maybe', {
    enumerable: false,
    value: (name: string) => {
      if (!SETTING_BY_NAME.has(name)) throw new Error(`unknown setting ${name}`);
      return values[name];
    },
  });
  return Object.freeze(c) as Config;
}

function inScope(s: Setting, side: 'host' | 'server'): boolean {
  return side === 'host' ? true : s.scope !== 'host';
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (d[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      row[j] = Math.min(
        (prev[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  return (d[a.length] as number[])[b.length] as number;
}

// The same line grammar dotenv 16/17 uses, so a key is found where dotenv finds it (multi-line quoted values
// included); dotenv itself keeps the last of two equal keys without a word, which once aimed a run at the wrong server.
const DOTENV_LINE =
  /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/gm;

/** Problems for every key given more than once in an env file, naming both line numbers. */
export function duplicateKeys(text: string, file: string): string[] {
  const firstLine = new Map<string, number>();
  const out: string[] = [];
  const src = text.replace(/\r\n?/g, '\n');
  for (const m of src.matchAll(DOTENV_LINE)) {
    const key = m[1] as string;
    const keyAt = (m.index ?? 0) + m[0].indexOf(key);
    const line = src.slice(0, keyAt).split('\n').length;
    const first = firstLine.get(key);
    if (first === undefined) firstLine.set(key, line);
    else out.push(`${key} in ${file} is given twice (lines ${first} and ${line}); expected each setting once`);
  }
  return out;
}

export function loadConfig(opts: LoadOptions): LoadResult {
  const strict = opts.strict ?? true;
  const problems: string[] = [];
  const warnings: string[] = [];
  const missingSecrets: string[] = [];
  const sources: Record<string, string> = {};
  const env = opts.env ?? process.env;

  let fileValues: Record<string, string> = {};
  if (opts.envFile) {
    if (existsSync(opts.envFile)) {
      try {
        const text = readFileSync(opts.envFile, 'utf8');
        problems.push(...duplicateKeys(text, opts.envFile));
        fileValues = parseDotenv(text);
      } catch (e) {
        problems.push(
          `--env-file ${opts.envFile}: cannot be read (${(e as Error).message}); expected a readable dotenv file`,
        );
      }
    } else if (opts.explicitEnvFile) {
      problems.push(
        `--env-file ${opts.envFile}: the file does not exist; expected a dotenv file (copy .env.example to .env)`,
      );
    }
  }
  for (const key of Object.keys(fileValues)) {
    if (
      (key.startsWith('CODEXK8S_') || key.startsWith('TARGET_') || key.startsWith('OPERATOR_')) &&
      !SETTING_BY_NAME.has(key)
    ) {
      const near = SETTINGS.map((s) => s.name).sort((a, b) => levenshtein(key, a) - levenshtein(key, b))[0] ?? '';
      warnings.push(
        `${key} in ${opts.envFile} is not a known setting${levenshtein(key, near) <= 3 ? ` (did you mean ${near}?)` : ''}; it is ignored`,
      );
    }
  }

  const values: Values = {};
  const unset: Setting[] = [];
  for (const s of SETTINGS) {
    if (!inScope(s, opts.side)) continue;
    let raw: string | undefined;
    const fromEnv = env[s.name];
    if (fromEnv !== undefined && fromEnv !== '') {
      raw = fromEnv;
      sources[s.name] = 'env';
    } else if (fileValues[s.name] !== undefined && fileValues[s.name] !== '') {
      raw = fileValues[s.name];
      sources[s.name] = 'file';
    }
    raw = raw?.trim();
    // Only spaces: unset, as the server reads an empty value in bootstrap.env (else its default would differ from ours).
    if (raw === '') {
      raw = undefined;
      delete sources[s.name];
    }
    if (raw !== undefined && s.secret) registerSecret(raw);

    // The operator key is normally read from a file on the laptop.
    if (s.name === 'OPERATOR_SSH_PUBKEY' && raw === undefined && opts.side === 'host') {
      const path = values['OPERATOR_SSH_PUBKEY_PATH'] as string | undefined;
      if (path) {
        const read = readSmallFile(path);
        if (read.ok) {
          raw = read.text.trim();
          sources[s.name] = 'derived';
        } else {
          (strict ? problems : warnings).push(
            `OPERATOR_SSH_PUBKEY_PATH: ${read.why} (${path}); expected a readable OpenSSH public key file`,
          );
          continue;
        }
      }
    }

    if (raw === undefined) {
      const def = typeof s.default === 'function' ? s.default(values) : s.default;
      if (def !== undefined) {
        raw = def;
        sources[s.name] = 'default';
      }
    }
    if (raw === undefined) {
      unset.push(s);
      continue;
    }
    const parsed = parseValue(s, raw);
    if (!parsed.ok) {
      problems.push(`${s.name}: ${parsed.why}; expected ${parsed.expected}`);
      continue;
    }
    values[s.name] = parsed.value;
  }

  // Required-when rules may depend on settings listed after them (the domain on the mode): second pass.
  for (const s of unset) {
    const required = typeof s.required === 'function' ? s.required(values) : (s.required ?? false);
    if (!required) continue;
    if (s.secret) missingSecrets.push(s.name);
    else
      problems.push(
        `${s.name}: is not set; it is required${s.requiredText ? ' ' + s.requiredText : ''}. ${s.description}`,
      );
  }
  crossChecks(values, opts.side, strict, problems, warnings);
  // On the laptop before anything is contacted; on the server it catches a hand-edited bootstrap.env (configHash needs it).
  problems.push(...serverEnvProblems(values));
  if (strict && missingSecrets.length > 0) {
    for (const name of missingSecrets)
      problems.push(
        `${name}: is not set; it is a required secret. Put it in the env file, export it, or run on a terminal without --yes to be prompted.`,
      );
  }
  return { config: makeConfig(values), problems, warnings, missingSecrets, sources };
}

function readSmallFile(path: string): { ok: true; text: string } | { ok: false; why: string } {
  try {
    const st = statSync(path);
    if (!st.isFile()) return { ok: false, why: 'is not a file' };
    if (st.size > 64 * 1024) return { ok: false, why: 'is too large for a key file' };
    return { ok: true, text: readFileSync(path, 'utf8') };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      ok: false,
      why:
        code === 'ENOENT'
          ? 'the file does not exist'
          : code === 'EACCES'
            ? 'the file is not readable'
            : (e as Error).message,
    };
  }
}

/**
 * Accounts that Debian 12 and Ubuntu 24.04 (server and cloud images) create for themselves: never the operator.
 * The server checks the real account too (a uid below 1000 is refused); this list says so before any contact.
 */
export const SYSTEM_ACCOUNTS: ReadonlySet<string> = new Set([
  'root',
  'daemon',
  'bin',
  'sys',
  'sync',
  'games',
  'man',
  'lp',
  'mail',
  'news',
  'uucp',
  'proxy',
  'www-data',
  'backup',
  'list',
  'irc',
  'gnats',
  'nobody',
  '_apt',
  'messagebus',
  'sshd',
  'syslog',
  'uuidd',
  'tcpdump',
  'tss',
  'landscape',
  'pollinate',
  'polkitd',
  'usbmux',
  'dnsmasq',
  'fwupd-refresh',
  'lxd',
  'dhcpcd',
  'statd',
  'postgres',
  'systemd-network',
  'systemd-resolve',
  'systemd-timesync',
  'systemd-coredump',
  'systemd-journal-remote',
  'systemd-oom',
]);

function crossChecks(
  v: Values,
  side: 'host' | 'server',
  strict: boolean,
  problems: string[],
  warnings: string[],
): void {
  const op = v['OPERATOR_USER'];
  if (typeof op === 'string' && SYSTEM_ACCOUNTS.has(op))
    problems.push(
      `OPERATOR_USER: "${op}" is ${op === 'root' ? 'root' : 'a system account on Debian and Ubuntu'}; expected a new, unprivileged name for the operator login (such as codex): step 10 gives it a login shell, your key and sudo`,
    );
  const min = v['CODEXK8S_RUNNER_MIN'];
  const max = v['CODEXK8S_RUNNER_MAX'];
  if (typeof min === 'number' && typeof max === 'number' && min > max)
    problems.push(`CODEXK8S_RUNNER_MIN: ${min} is greater than CODEXK8S_RUNNER_MAX (${max}); expected MIN <= MAX`);
  if (v['CODEXK8S_MODE'] === 'local' && v['CODEXK8S_STAGING_DOMAIN'] !== undefined)
    warnings.push(
      'CODEXK8S_STAGING_DOMAIN is set but CODEXK8S_MODE is local: the domain is not used (no TLS, no webhook)',
    );
  const warn = v['CODEXK8S_WARN_MEMORY_MIB'];
  const fail = v['CODEXK8S_MIN_MEMORY_MIB'];
  if (typeof warn === 'number' && typeof fail === 'number' && warn < fail)
    problems.push(`CODEXK8S_WARN_MEMORY_MIB: ${warn} is below CODEXK8S_MIN_MEMORY_MIB (${fail}); expected WARN >= MIN`);
  if (side === 'host') {
    // The launcher creates these (and known_hosts/ under the state dir) on the first run: a file in the way is a setting problem.
    for (const [name, sub] of [
      ['CODEXK8S_HOST_STATE_DIR', 'known_hosts'],
      ['CODEXK8S_HOST_LOG_DIR', undefined],
    ] as const) {
      const dir = v[name];
      if (typeof dir !== 'string') continue;
      for (const p of sub ? [dir, join(dir, sub)] : [dir])
        if (existsSync(p) && !statSync(p).isDirectory())
          (strict ? problems : warnings).push(
            `${name}: ${p} exists and is not a directory; expected a directory (or no file there: the launcher creates it)`,
          );
    }
    // The private keys the launcher logs in with. OPERATOR_SSH_KEY: after an sshd or firewall change it proves a fresh
    // operator login with it; without it every such change would be rolled back, so say so before anything is contacted.
    const keys: Array<[string, Value | undefined, string]> = [
      ['TARGET_ROOT_SSH_KEY', v['TARGET_ROOT_SSH_KEY'], 'the private key file for the TARGET_ROOT_USER login'],
      [
        'OPERATOR_SSH_KEY',
        v['OPERATOR_SSH_KEY'],
        "the operator's private key, which the launcher logs in with after hardening sshd (set OPERATOR_SSH_KEY when it is not OPERATOR_SSH_PUBKEY_PATH without .pub)",
      ],
    ];
    if (v['CODEXK8S_SSH_JUMP'] !== undefined && v['CODEXK8S_SSH_JUMP_KEY'] !== v['TARGET_ROOT_SSH_KEY'])
      keys.push(['CODEXK8S_SSH_JUMP_KEY', v['CODEXK8S_SSH_JUMP_KEY'], 'the private key for the jump host login']);
    for (const [name, key, expected] of keys) {
      if (typeof key !== 'string') continue;
      const r = readSmallFile(key);
      if (!r.ok) (strict ? problems : warnings).push(`${name}: ${r.why} (${key}); expected ${expected}`);
      else if (/PUBLIC KEY|^ssh-/.test(r.text.slice(0, 80)))
        problems.push(`${name}: ${key} is a public key; expected the private key (without .pub)`);
      else if (r.text.trim() === '') problems.push(`${name}: ${key} is empty; expected ${expected}`);
      else if ((statSync(key).mode & 0o077) !== 0)
        (strict ? problems : warnings).push(
          `${name}: ${key} is readable by other users (mode 0${(statSync(key).mode & 0o777).toString(8)}), and ssh refuses such keys; expected mode 0600 (chmod 600 ${key})`,
        );
    }
    if (v['OPERATOR_SSH_PUBKEY'] === undefined && !problems.some((p) => p.startsWith('OPERATOR_SSH_PUBKEY')) && strict)
      problems.push(
        'OPERATOR_SSH_PUBKEY: is not set and OPERATOR_SSH_PUBKEY_PATH gave no key; expected an OpenSSH public key',
      );
  } else if (v['OPERATOR_SSH_PUBKEY'] === undefined && strict) {
    problems.push(
      'OPERATOR_SSH_PUBKEY: is not set in the server config; expected the operator public key (the launcher writes it)',
    );
  }
}

/** A setting's value as printed (dry run, --verbose): secrets as ***, otherwise as the env file would hold it. */
export function describeValue(name: string, value: Value | undefined): string {
  const s = SETTING_BY_NAME.get(name);
  if (value === undefined) return '(unset)';
  if (!s) throw new Error(`unknown setting ${name}`);
  return s.secret ? '***' : rawForm(s, value);
}

/** 300 -> 5m, 5400 -> 1h30m, 45 -> 45s (the form parseDuration reads back). */
export function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s || (!h && !m) ? `${s}s` : ''}`;
}

/** A value in the form its env-file entry takes (parseValue reads it back to the same value). */
function rawForm(s: Setting, value: Value): string {
  if (Array.isArray(value)) return value.join(' ');
  if (typeof value === 'object')
    return Object.entries(value)
      .map(([k, x]) => `${k}=${x}`)
      .join(',');
  if (s.kind === 'duration') return formatDuration(value as number);
  return String(value);
}

// dotenv reads '...' and `...` literally, and "..." with \n and \r expanded; a backslash before the closing quote can
// make its line grammar run on into the next line. Values that no quoting carries unchanged are refused at validation.
const ONE_LINE =
  'a value on one line, not ending in a backslash, without all three of \' " ` (bootstrap.env holds it quoted)';

function dotenvQuote(value: string): { ok: true; text: string } | { ok: false; why: string } {
  if (/[\r\n]/.test(value)) return { ok: false, why: 'it contains a line break' };
  if (value.endsWith('\\')) return { ok: false, why: 'it ends with a backslash' };
  // The order of old, so a value that always round-tripped keeps its text (and configHash) as before.
  for (const q of ["'", '"', '`'])
    if (!value.includes(q) && (q !== '"' || !/\\[nr]/.test(value))) return { ok: true, text: `${q}${value}${q}` };
  if (!value.includes('"'))
    return { ok: false, why: "it contains ' and ` and a \\n or \\r, which double quotes would expand" };
  return { ok: false, why: 'it contains all of \' " `' };
}

/** One dotenv value, quoted so that dotenv reads it back unchanged (validation refused every value that cannot be). */
export function quoteDotenv(value: string): string {
  const q = dotenvQuote(value);
  if (!q.ok) throw new Error(`a value that cannot be written to bootstrap.env: ${q.why}`);
  return q.text;
}

/** Settings whose value would not reach the steps unchanged through bootstrap.env: found before anything is contacted. */
function serverEnvProblems(v: Values): string[] {
  const out: string[] = [];
  const lines: string[] = [];
  const written: Setting[] = [];
  const problem = (s: Setting, why: string) =>
    `${s.name}: ${s.secret ? 'the value (hidden)' : 'the value'} cannot be written to the server's bootstrap.env unchanged (${why}); expected ${ONE_LINE}`;
  for (const s of SETTINGS) {
    const value = v[s.name];
    if (s.scope === 'host' || value === undefined) continue;
    const q = dotenvQuote(rawForm(s, value));
    if (q.ok) {
      lines.push(`${s.name}=${q.text}`);
      written.push(s);
    } else out.push(problem(s, q.why));
  }
  // Read back as a step reads it (dotenv, trim, the same parser): the whole file at once, since one line can swallow the next.
  const back = parseDotenv(lines.join('\n') + '\n');
  for (const s of written) {
    const raw = back[s.name]?.trim();
    const parsed = raw ? parseValue(s, raw) : undefined;
    if (!parsed?.ok || !isDeepStrictEqual(parsed.value, v[s.name]))
      out.push(problem(s, 'the server would read it differently'));
  }
  return out;
}

/** The server's bootstrap.env: every setting the remote steps use, nothing that stays on the laptop. */
export function serializeServerEnv(config: Config): string {
  const lines = ['# Written by bootstrap_remote_staging.mts. Holds secrets: keep it 0600, root-owned.', ''];
  for (const s of SETTINGS) {
    if (s.scope === 'host') continue;
    const v = config[s.name];
    if (v === undefined) continue;
    lines.push(`${s.name}=${quoteDotenv(rawForm(s, v))}`);
  }
  return lines.join('\n') + '\n';
}

/** A stable hash of the settings a server run depends on (the journal records it per step). */
export function configHash(config: Config): string {
  return createHash('sha256').update(serializeServerEnv(config)).digest('hex').slice(0, 16);
}

export function secretSettings(): Setting[] {
  return SETTINGS.filter((s) => s.secret);
}
