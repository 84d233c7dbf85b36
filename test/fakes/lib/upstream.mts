// The vendored upstream data (schemas, CRDs, key trees): test/fixtures/upstream/ in the repository, copied into the
// sandbox as /opt/codex-k8s-fakes/upstream/ (install-layout.mts). Provenance: test/fixtures/upstream/PROVENANCE.md.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const UPSTREAM =
  [new URL('../upstream/', import.meta.url), new URL('../../fixtures/upstream/', import.meta.url)]
    .map((u) => fileURLToPath(u))
    .find((d) => existsSync(d)) ?? fileURLToPath(new URL('../../fixtures/upstream/', import.meta.url));

/** A vendored upstream file's text, by its path under test/fixtures/upstream/. */
export const readUpstream = (rel: string): string => readFileSync(UPSTREAM + rel, 'utf8');
