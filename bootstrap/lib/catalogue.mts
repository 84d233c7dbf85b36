// The remote steps, in order. The order is the contract: each step may rely on every step before it.
// Each entry matches one executable file bootstrap/remote/<name>.mts (a test checks both ways).
// `checks` and `changes` are what --dry-run, --list and each step's --help print.

export interface StepInfo {
  readonly name: string;
  readonly title: string;
  readonly checks: readonly string[];
  readonly changes: readonly string[];
  /** Extra one-off flags of the step (e.g. --confirm), shown in its --help; the step implements each. */
  readonly modes?: ReadonlyArray<{ readonly name: string; readonly description: string }>;
  /** The step calls the GitHub API with CODEXK8S_GITHUB_PAT: the launcher checks the token's permissions first. */
  readonly usesGitHub?: boolean;
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
      'kernel.apparmor_restrict_unprivileged_userns and the rootlesskit AppArmor profile: a restricting kernel needs CODEXK8S_BUILDKIT_USERNS (exit 2)',
      'OPERATOR_USER is new, or an account this tool created, or adopted (OPERATOR_ADOPT_EXISTING); root and system accounts (uid below 1000) are refused (exit 2)',
    ],
    changes: ['nothing'],
  },
  {
    name: '10_harden_host',
    title: 'Harden the host: operator user, sshd, firewall, fail2ban, updates, kernel settings',
    checks: [
      'packages nftables, fail2ban, python3-systemd, unattended-upgrades are installed (dpkg-query)',
      'user OPERATOR_USER exists with a home and /bin/bash; OPERATOR_SSH_PUBKEY is in its authorized_keys (0600); refused before any change when it is root, a system account, or an account this tool did not create (OPERATOR_ADOPT_EXISTING=true adopts it)',
      '/etc/sudoers.d/codex-k8s-operator grants NOPASSWD sudo (0440, validated with visudo)',
      'effective sshd settings (sshd -T): PasswordAuthentication no, KbdInteractiveAuthentication no, PermitRootLogin prohibit-password (or the stricter no that the server has without our drop-in), MaxAuthTries CODEXK8S_SSH_MAX_AUTH_TRIES, Port CODEXK8S_SSH_PORT; sshd_config includes sshd_config.d',
      'with ssh.socket active (Ubuntu 24.04): the socket listens on CODEXK8S_SSH_PORT',
      'the nftables table inet codex_k8s is loaded as rendered (content marker and rule count) and unchanged since it was loaded (fingerprint) and codex-k8s-firewall.service is enabled; or absent when CODEXK8S_FIREWALL_ENABLED=false',
      'fail2ban: /etc/fail2ban/jail.d/codex-k8s.local, service enabled and running, jail sshd answers',
      'unattended-upgrades: apt-config values (lists update, upgrade, Automatic-Reboot = CODEXK8S_AUTO_REBOOT), apt-daily timers enabled',
      'kernel: /etc/modules-load.d (overlay, br_netfilter) and /etc/sysctl.d (ip_forward, bridge-nf-call) written and live; no active swap, none in /etc/fstab; NTP on (skipped in a container)',
    ],
    changes: [
      'apt-get install of the missing packages only (waits for the dpkg lock)',
      'creates the user (useradd) when missing; adds the key to authorized_keys, keeping other keys; writes the sudoers drop-in after `visudo -cf` accepts it',
      'writes /etc/ssh/sshd_config.d/00-codex-k8s.conf after `sshd -t` accepts the full candidate config, then reloads sshd (open sessions survive); a port change with ssh.socket gets /etc/systemd/system/ssh.socket.d/addresses.conf and a socket restart',
      'writes /etc/nftables.d/codex-k8s.nft after `nft -c` accepts it, and codex-k8s-firewall.service, which loads it at boot; other tables (k3s, the distribution) are not touched',
      'before an sshd or firewall change: snapshots the previous files to /var/lib/codex-k8s-bootstrap/rollback/ and schedules codex-k8s-rollback.timer (CODEXK8S_LOCKOUT_ROLLBACK_AFTER); the launcher then logs in anew as the operator and confirms, or rolls back',
      'writes /etc/fail2ban/jail.d/codex-k8s.local (checked with fail2ban-client -t), enables and (re)loads fail2ban',
      'writes /etc/apt/apt.conf.d/52codex-k8s-unattended-upgrades and enables the apt-daily timers',
      'writes /etc/sysctl.d/90-codex-k8s.conf and /etc/modules-load.d/codex-k8s.conf, applies them; swapoff -a and comments swap lines in /etc/fstab; timedatectl set-ntp true',
    ],
    modes: [
      {
        name: 'confirm',
        description:
          'keep the last operator/sshd/firewall change: cancel the pending rollback timer and drop the snapshot (run it from a NEW login)',
      },
      {
        name: 'rollback',
        description:
          'restore the operator account, sshd and firewall as snapshotted before the last unconfirmed change, and reload them',
      },
    ],
  },
  {
    name: '20_install_k3s',
    title: 'k3s (pinned), the in-cluster registry mirror over http, node Ready, kubeconfig for the operator',
    checks: [
      '`k3s --version` is the pinned version (bootstrap/lib/versions.mts K3S_VERSION)',
      'the k3s.service ExecStart has --write-kubeconfig-mode 600, --cluster-cidr CODEXK8S_POD_CIDR, --service-cidr CODEXK8S_SERVICE_CIDR and no --disable (Traefik, ServiceLB, local-path are kept)',
      '/etc/rancher/k3s/registries.yaml maps registry.codex-k8s.internal:PORT and 127.0.0.1:PORT (CODEXK8S_INTERNAL_REGISTRY_PORT) to http://127.0.0.1:PORT',
      "containerd's generated certs.d/<mirror>/hosts.toml use http, not https (k3s #12551)",
      'k3s.service is active and every node is Ready (kubectl wait, bounded)',
      '~OPERATOR_USER/.kube/config is a copy of /etc/rancher/k3s/k3s.yaml, 0600, owned by the operator',
    ],
    changes: [
      'writes registries.yaml (0600) before k3s starts; restarts k3s when it changed',
      'downloads the install script from its pinned commit URL, checks its sha256, runs the local copy with INSTALL_K3S_VERSION pinned (only when the version or flags differ; an upgrade is journaled "k3s FROM -> TO"; a server newer than the pin is refused: k3s cannot be downgraded)',
      'copies the kubeconfig to the operator',
    ],
  },
  {
    name: '30_cluster_deps',
    title:
      "Cluster add-ons: helm, cert-manager (+ Let's Encrypt issuer in server mode), Traefik settings, namespaces, NetworkPolicy, in-cluster registry",
    checks: [
      'helm is the pinned, sha256-verified release (bootstrap/lib/versions.mts HELM)',
      'helm release cert-manager/cert-manager runs the pinned chart version with the pinned values (crds.enabled=true); read with helm list / helm get values',
      'namespaces codex-k8s-system, CODEXK8S_STAGING_NAMESPACE and CODEXK8S_RUNNER_NAMESPACE, the staging NetworkPolicy "baseline", the Traefik HelmChartConfig, the registry (PVC, Deployment, Service) and, in server mode, the ClusterIssuer "letsencrypt" match manifests/cluster and manifests/registry (kubectl diff)',
      'the registry Deployment is available',
    ],
    changes: [
      'installs helm from its pinned tarball (sha256-checked)',
      'helm upgrade --install of cert-manager, only when the chart version or values differ (--wait, bounded by CODEXK8S_ROLLOUT_TIMEOUT)',
      'kubectl apply of the manifests that differ; server mode: HTTP->HTTPS redirect in Traefik and the ClusterIssuer (CODEXK8S_LETSENCRYPT_EMAIL, CODEXK8S_LETSENCRYPT_SERVER)',
      'waits, bounded, for the registry rollout (hostPort CODEXK8S_INTERNAL_REGISTRY_PORT on 127.0.0.1)',
    ],
  },
  {
    name: '40_postgres',
    title: 'PostgreSQL (pgvector) StatefulSet with credentials generated once, and pg_dump backups',
    checks: [
      'Secret postgres-credentials exists in CODEXK8S_STAGING_NAMESPACE with POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, DATABASE_URL (read back, never regenerated)',
      'the StatefulSet, its Services, the backup PVC and the backup CronJob (CODEXK8S_POSTGRES_BACKUP_SCHEDULE, CODEXK8S_POSTGRES_BACKUP_KEEP) match manifests/postgres (kubectl diff)',
      'the StatefulSet is ready (pg_isready readiness probe)',
      'a restore uploaded by --restore-from (/var/lib/codex-k8s-bootstrap/restore) is pending; refused before any change (exit 2) when the server holds other credentials, another webhook secret, another repository wiring, or a database with rows (unless --restore-overwrite)',
    ],
    changes: [
      'generates the password once (in memory, applied on stdin) when the Secret does not exist, or takes it from a restored bundle; refuses when the Secret is gone but the data PVC is not',
      'kubectl apply of the manifests that differ; never deletes a PVC',
      'waits, bounded, for the StatefulSet rollout',
      "a pending restore: pg_restore of the bundle's dump in one transaction, row counts compared with its manifest, the webhook secret file and the journal's GitHub record put back; then the uploaded bundle is removed",
    ],
    modes: [
      {
        name: 'backup-stream',
        description:
          "write a backup bundle (unencrypted: the PostgreSQL dump, the generated secrets, the journal, the pins, a manifest) to stdout for the launcher's --backup, which encrypts it; changes nothing",
      },
    ],
  },
  {
    name: '50_deploy_codex_k8s',
    title:
      'The codex-k8s staging service: BuildKit in the cluster, the first image, Deployment, Service, Ingress, runtime Secret',
    checks: [
      'user namespaces for rootless BuildKit: on a kernel with kernel.apparmor_restrict_unprivileged_userns=1, CODEXK8S_BUILDKIT_USERNS is set (else exit 2); sysctl: /etc/sysctl.d/99-codex-k8s-buildkit-userns.conf sets it to 0 and it is 0; apparmor: /etc/apparmor.d/codex-k8s-buildkitd (userns) is loaded',
      'Secret codex-k8s-runtime in CODEXK8S_STAGING_NAMESPACE holds the webhook secret of /etc/codex-k8s-bootstrap/secrets/github-webhook-secret (key github-webhook-secret; compared, never printed)',
      'BuildKit in codex-k8s-system: the ConfigMap buildkit-scripts equals manifests/buildkit/build.sh, the StatefulSet buildkitd (rootless, pinned image) and the Role codex-k8s-builder + RoleBinding codex-k8s-runner-builder (exec into buildkitd-0 only, for the runners) match manifests/buildkit (kubectl diff); buildkitd-0 is ready',
      'the Deployment codex-k8s, its Service and Ingress (server mode: CODEXK8S_STAGING_DOMAIN with TLS from the ClusterIssuer letsencrypt; local mode: plain HTTP, no host) match manifests/app with the live image (kubectl diff)',
      'the Deployment is rolled out and its pods run the wanted image',
    ],
    changes: [
      'generates the webhook secret file once (0600) when it is missing; creates the runtime Secret from it (server-side apply, on stdin), or updates the Secret when the file was rotated',
      'the chosen user-namespace remedy: writes the sysctl file and runs sysctl -p, or writes the AppArmor profile and runs apparmor_parser --replace (buildkitd-0 then runs under it: appArmorProfile Localhost)',
      "kubectl apply of the BuildKit objects that differ; waits, bounded, for buildkitd-0, and fails fast with buildkitd's last log lines when it crash-loops",
      'only when the Deployment does not exist yet: streams the uploaded app/ as a tar to build.sh in buildkitd-0 (kubectl exec -i), which builds it and pushes registry.../codex-k8s:sha-<12 hex of source.json gitSha> (skipped when that tag is already pushed; bounded by CODEXK8S_BUILD_TIMEOUT)',
      'kubectl apply of the app objects that differ; once the Deployment exists its image is the live one (the deploy workflow owns the tag), so a re-run never rolls staging back',
      'waits, bounded by CODEXK8S_ROLLOUT_TIMEOUT, for the rollout; fails when a pod runs another image',
    ],
  },
  {
    name: '60_runner_arc',
    title:
      'GitHub Actions runners in the cluster: ARC controller and runner scale set, runner ServiceAccount and deploy Role',
    usesGitHub: true,
    checks: [
      'Secret codex-k8s-runner-github-<token sha256 prefix> in CODEXK8S_RUNNER_NAMESPACE holds CODEXK8S_GITHUB_PAT under github_token (sha256 compared; the value is never printed); Secrets of earlier tokens are gone',
      'ServiceAccount codex-k8s-runner (runner namespace), Roles codex-k8s-deployer (the deploy) and codex-k8s-backup (exec into postgres-0 only, the nightly backup) with their RoleBindings (CODEXK8S_STAGING_NAMESPACE) match manifests/runner (kubectl diff); no cluster-wide rights',
      'helm release arc-systems/arc runs chart gha-runner-scale-set-controller at the pinned version with the pinned values (helm list / helm get values)',
      'helm release CODEXK8S_RUNNER_NAMESPACE/CODEXK8S_RUNNER_SCALE_SET_NAME runs chart gha-runner-scale-set at the pinned version: githubConfigUrl CODEXK8S_GITHUB_URL/CODEXK8S_GITHUB_REPO, the Secret by name, min = max = 1 runner (local) or CODEXK8S_RUNNER_MIN..CODEXK8S_RUNNER_MAX (server), our ServiceAccount, the pinned runner image',
      'the listener pod in arc-systems is Ready and GitHub gave the scale set an ID (annotation runner-scale-set-id); local mode: a runner of the set is online in GitHub (GET /repos/{owner}/{repo}/actions/runners)',
    ],
    changes: [
      'kubectl apply (on stdin) of the token Secret when it is missing or holds another token',
      'kubectl apply of the runner ServiceAccount, Role and RoleBinding that differ',
      'helm upgrade --install of the controller, then of the scale set, each only when its chart version or values differ (--wait, bounded by CODEXK8S_ROLLOUT_TIMEOUT)',
      "when ARC's version moves: ARC's upgrade sequence first (uninstall the scale set and wait until it is gone, uninstall the controller, delete ARC's CRDs), so the controller's install brings the new CRDs (helm never upgrades a chart's crds/)",
      'waits, bounded by CODEXK8S_ROLLOUT_TIMEOUT, for the listener, the scale set registration and (local mode) the runner; a timeout names what is missing and where to look',
      'then deletes the token Secrets of earlier tokens (a rotated token is a new Secret the scale set is switched to)',
    ],
  },
  {
    name: '70_github_repo',
    title: 'GitHub repository wiring: Actions variables, sealed secrets, the codex-k8s webhook (server mode)',
    usesGitHub: true,
    checks: [
      'repository variables CODEXK8S_MODE, CODEXK8S_STAGING_NAMESPACE, CODEXK8S_RUNNER_SCALE_SET_NAME, CODEXK8S_INTERNAL_REGISTRY, CODEXK8S_ROLLOUT_TIMEOUT, CODEXK8S_STAGING_URL (and CODEXK8S_STAGING_DOMAIN in server mode) have the configured values (listed with pagination)',
      "Actions secret CODEXK8S_WEBHOOK_SECRET exists and was written from the current value (keyed hash in the journal, GitHub's updated_at unchanged)",
      'server mode: one webhook https://CODEXK8S_STAGING_DOMAIN/webhooks/github, content type json, TLS verified, events CODEXK8S_GITHUB_WEBHOOK_EVENTS, current secret',
      'names this tool created earlier and no longer uses (journal section "github") are gone',
    ],
    changes: [
      'generates the webhook secret once: /etc/codex-k8s-bootstrap/secrets/github-webhook-secret (0600); later runs read it back',
      'creates variables (POST) or updates them (PATCH), only when the value differs',
      'seals each secret with the repository public key (tweetsodium) and PUTs it with the key_id, only when it changed',
      'creates or updates the webhook, found by URL (never a duplicate)',
      'deletes variables, secrets and webhooks this tool created and no longer uses; never a name it did not create',
    ],
  },
  {
    name: '80_deploy_loop_check',
    title:
      'Deploy loop check: dispatch the staging-deploy workflow, wait for it green, smoke-check staging from the server',
    usesGitHub: true,
    checks: [
      'the journal (section deployLoop) proves the loop for the newest commit staging-deploy.yml ran for on the default branch (GET /repos/{owner}/{repo}/actions/workflows/staging-deploy.yml/runs), with the pins of this checkout (lib/versions.mts); a push to main, or an upgrade (a pin moved), is drift',
      'staging still answers /version with that commit (CODEXK8S_SMOKE_URL; else https://CODEXK8S_STAGING_DOMAIN in server mode, http://<ClusterIP of kube-system/traefik> in local mode)',
    ],
    changes: [
      "dispatches staging-deploy.yml on the default branch (POST .../actions/workflows/staging-deploy.yml/dispatches) and waits for its run, bounded by CODEXK8S_DEPLOY_WAIT; prints the run URL, its conclusion and each job's duration; a red run fails the step with the run URL",
      'runs the smoke checks from the server (TLS in server mode, /healthz, /readyz, /version = the commit the run deployed, unsigned and signed webhook deliveries, the runner scale set) with the webhook secret of /etc/codex-k8s-bootstrap/secrets/github-webhook-secret',
      'records the proven commit and the pins it was proven with in the journal (state.json, deployLoop)',
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
