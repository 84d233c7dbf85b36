// Every pinned version, download URL and sha256 of the project lives here, and only here.
// A download is accepted only when its sha256 matches the value below (see lib/artifacts.mts).
//
// How to bump a pin: change the version, take the sha256 from the vendor's signed checksum list
// (for Node.js: https://nodejs.org/dist/vX.Y.Z/SHASUMS256.txt, checked against its .asc signature),
// run `npm test`, and say in the commit where the checksum came from.

export type Arch = 'x64' | 'arm64';

export interface Artifact {
  /** Stable name, used in logs, in the mirror layout and in CODEXK8S_ARTIFACT_SHA256_OVERRIDES. */
  readonly name: string;
  readonly version: string;
  /** Default download base URL; CODEXK8S_ARTIFACT_MIRROR replaces it. */
  readonly baseUrl: string;
  /** File name under the base URL, per architecture. */
  readonly files: Readonly<Record<Arch, string>>;
  /** Path under the base URL that holds the file (joined as baseUrl/path/file). */
  readonly path: string;
  readonly sha256: Readonly<Record<Arch, string>>;
}

/** Node.js LTS that runs the remote steps on the server (native type stripping, no loader). */
export const NODE: Artifact = {
  name: 'node',
  version: '24.11.1',
  baseUrl: 'https://nodejs.org/dist',
  path: 'v24.11.1',
  files: {
    x64: 'node-v24.11.1-linux-x64.tar.xz',
    arm64: 'node-v24.11.1-linux-arm64.tar.xz',
  },
  // From https://nodejs.org/dist/v24.11.1/SHASUMS256.txt
  sha256: {
    x64: '60e3b0a8500819514aca603487c254298cd776de0698d3cd08f11dba5b8289a8',
    arm64: '6b0863fb9f627bf4a6c5948dce1de4398174a2e05dbe717503d828e211ca01f0',
  },
};

export const ARTIFACTS: readonly Artifact[] = [NODE];

/**
 * Hosts the server reaches over HTTPS besides the artifacts above: container registries the cluster pulls
 * from, Helm chart repositories, and the ACME server. 00_preflight probes each one (and each artifact's
 * host), so a blocked egress shows up before the first download. Keep it in step with the charts and
 * images pinned in this file.
 */
export const OUTBOUND_ENDPOINTS: readonly { readonly url: string; readonly why: string; readonly serverModeOnly?: boolean }[] = [
  { url: 'https://registry-1.docker.io/v2/', why: 'container images: k3s system images, the registry, PostgreSQL, BuildKit' },
  { url: 'https://ghcr.io/v2/', why: 'the GitHub Actions Runner Controller charts and images' },
  { url: 'https://quay.io/v2/', why: 'the cert-manager images' },
  { url: 'https://charts.jetstack.io/index.yaml', why: 'the cert-manager Helm chart' },
  { url: 'https://github.com/', why: 'the k3s release binaries' },
  { url: 'https://acme-v02.api.letsencrypt.org/directory', why: "Let's Encrypt: TLS certificates", serverModeOnly: true },
];
