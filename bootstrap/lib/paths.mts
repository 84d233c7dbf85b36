// Where things live on the server. The runbook quotes these paths; change them here only.
export const REMOTE = {
  /** The uploaded tree (bootstrap/, manifests/, package.json, node_modules/) and the Node runtime. */
  base: '/opt/codex-k8s-bootstrap',
  node: '/opt/codex-k8s-bootstrap/node',
  nodeBin: '/opt/codex-k8s-bootstrap/node/bin/node',
  /** The service's sources (app/: src, package files, Dockerfile), the build context of the first image (step 50). */
  app: '/opt/codex-k8s-bootstrap/app',
  /** {"gitSha": "<40 hex>"}: the commit app/ was uploaded from, written by the launcher (step 50 tags the image). */
  sourceFile: '/opt/codex-k8s-bootstrap/source.json',
  /** Hash of the uploaded tree, to skip identical uploads. */
  treeHashFile: '/opt/codex-k8s-bootstrap/.tree-sha256',
  /** The configuration the steps read, written by the launcher (0600, holds secrets). */
  envFile: '/etc/codex-k8s-bootstrap/bootstrap.env',
  /**
   * The laptop's settings for one --check run, when they differ from envFile. Inside the lock directory: it goes
   * when the lock is released or taken over (a killed check), and at reboot (/run).
   */
  checkEnvFile: '/run/lock/codex-k8s-bootstrap/check.env',
  /** Secrets generated once on the server (0600 files, directory 0700), read back on every later run. */
  secretsDir: '/etc/codex-k8s-bootstrap/secrets',
  /**
   * The GitHub webhook secret: generated once by whichever step needs it first (50_deploy_codex_k8s puts it in the
   * app's runtime Secret, 70_github_repo in the Actions secret and the webhook), read back by every later run.
   */
  webhookSecretFile: '/etc/codex-k8s-bootstrap/secrets/github-webhook-secret',
  /**
   * A restore in progress: the checked parts of a backup bundle the launcher uploaded (--restore-from), 0700, files
   * 0600; 40_postgres restores from it, then removes it.
   */
  restoreDir: '/var/lib/codex-k8s-bootstrap/restore',
  /** The journal: per step status, times, changes, config hash. */
  stateDir: '/var/lib/codex-k8s-bootstrap',
  journal: '/var/lib/codex-k8s-bootstrap/state.json',
  /**
   * Node's compile cache for the steps the launcher runs (NODE_COMPILE_CACHE): only speed, keyed by each module's
   * content, safe to delete at any time.
   */
  compileCache: '/var/cache/codex-k8s-bootstrap/node-compile-cache',
  /** Append-only logs, one file per run. */
  logDir: '/var/log/codex-k8s-bootstrap',
  /** The run lock: a directory (mkdir is atomic) holding an `owner` file. /run is cleared by a reboot. */
  lockDir: '/run/lock/codex-k8s-bootstrap',
} as const;

export const UPLOAD_ENTRIES = ['bootstrap', 'manifests', 'app', 'package.json', 'source.json', 'node_modules'] as const;

/** The result line a step prints last; the launcher reads it and hides it. */
export const RESULT_MARKER = '@@codex-k8s-step-result@@';
