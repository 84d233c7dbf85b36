// Where a pinned artifact is downloaded from and which sha256 it must have, after the mirror
// (CODEXK8S_ARTIFACT_MIRROR) and checksum overrides (CODEXK8S_ARTIFACT_SHA256_OVERRIDES) are applied.
import type { Arch, Artifact } from './versions.mts';

export interface ResolvedArtifact {
  name: string;
  version: string;
  arch: Arch;
  url: string;
  sha256: string;
  /** Set when the checksum is not the pinned one (printed as a warning). */
  overriddenFrom?: string;
}

export function resolveArtifact(
  a: Artifact,
  arch: Arch,
  mirror: string | undefined,
  overrides: Readonly<Record<string, string>> | undefined,
): ResolvedArtifact {
  const file = a.files[arch];
  const url = mirror
    ? `${mirror.replace(/\/+$/, '')}/${a.name}/${file}`
    : [a.baseUrl, a.path, file].filter((p) => p !== '').join('/');
  const pinned = a.sha256[arch];
  const override = overrides?.[`${a.name}:${arch}`];
  return override && override !== pinned
    ? { name: a.name, version: a.version, arch, url, sha256: override, overriddenFrom: pinned }
    : { name: a.name, version: a.version, arch, url, sha256: pinned };
}
