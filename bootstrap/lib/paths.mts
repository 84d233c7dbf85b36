// Where things live on the server. The runbook quotes these paths; change them here only.
export const REMOTE = {
  /** The uploaded tree (bootstrap/, manifests/, package.json, node_modules/) and the Node runtime. */
  base: '/opt/codex-k8s-bootstrap',
  node: '/opt/codex-k8s-bootstrap/node',
  nodeBin: '/opt/codex-k8s-bootstrap/node/bin/node',
  /** Hash of the uploaded tree, to skip identical uploads. */
  treeHashFile: '/opt/codex-k8s-bootstrap/.tree-sha256',
  /** The configuration the steps read, written by the launcher (0600, holds secrets). */
  envFile: '/etc/codex-k8s-bootstrap/bootstrap.env',
  /** Secrets generated once on the server (0600 files, directory 0700), read back on every later run. */
  secretsDir: '/etc/codex-k8s-bootstrap/secrets',
  /** The journal: per step status, times, changes, config hash. */
  stateDir: '/var/lib/codex-k8s-bootstrap',
  journal: '/var/lib/codex-k8s-bootstrap/state.json',
  /** Append-only logs, one file per run. */
  logDir: '/var/log/codex-k8s-bootstrap',
  /** The run lock: a directory (mkdir is atomic) holding an `owner` file. /run is cleared by a reboot. */
  lockDir: '/run/lock/codex-k8s-bootstrap',
} as const;

export const UPLOAD_ENTRIES = ['bootstrap', 'manifests', 'package.json', 'node_modules'] as const;

/** The result line a step prints last; the launcher reads it and hides it. */
export const RESULT_MARKER = '@@codex-k8s-step-result@@';
