// What the sandbox harness copies into the sandbox's root so that the test doubles replace kubectl/helm there.
//
//   fakesOverlayFiles() -> [{src, dest, mode}]   (src: absolute path on the host; dest: absolute path in the sandbox)
//     /opt/codex-k8s-fakes/{kubectl,helm}.mts, lib/*.mts, charts.json, k3s-install.sh, bin/{kubectl,helm}
//     /opt/codex-k8s-fakes/upstream/...          the vendored chart schemas / key trees (test/fixtures/upstream)
//     /opt/codex-k8s-fakes/node_modules/...      the packages the doubles import (yaml, kubernetes-models,
//                                                @kubernetes-models/apimachinery) with all their dependencies,
//                                                in the same nested layout as in the repository's node_modules
//     /usr/local/bin/kubectl, /usr/local/bin/helm   launchers: exec /opt/codex-k8s-bootstrap/node/bin/node
//                                                /opt/codex-k8s-fakes/<tool>.mts "$@" (a clear error without that node)
//   The k3s install double is not put in PATH: the harness serves /opt/codex-k8s-fakes/k3s-install.sh (or its
//   src) from the local artifact mirror, where step 20 downloads the k3s install script.
//
// Host-only helpers (this file, testkit.mts) are not copied. Type declarations, source maps and docs of packages
// are left out. Run `node --import tsx test/fakes/install-layout.mts` to print the list as JSON.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface OverlayFile {
  /** Absolute path on the host. */
  src: string;
  /** Absolute path inside the sandbox. */
  dest: string;
  mode: number;
}

export const FAKES_HOME = '/opt/codex-k8s-fakes';

/** Packages the doubles import at run time (their dependencies are added automatically). */
export const RUNTIME_PACKAGES = ['yaml', 'kubernetes-models', '@kubernetes-models/apimachinery', 'ajv'] as const;

const FAKES_DIR = path.dirname(fileURLToPath(import.meta.url));
const HOST_ONLY = new Set(['install-layout.mts', 'testkit.mts', 'README.md']);
const SKIP_IN_PACKAGES = /(\.d\.[cm]?ts|\.map|\.md|\.markdown|\.ts|\.tsbuildinfo)$/i;

function walk(dir: string, visit: (file: string) => void, skipDir: (d: string) => boolean = () => false): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!skipDir(p)) walk(p, visit, skipDir);
    } else if (entry.isFile()) {
      visit(p);
    }
  }
}

/** Node's lookup: <from>/node_modules/<name>, then each parent's, up to `root`. */
function resolvePackageDir(name: string, from: string, root: string): string | undefined {
  let dir = from;
  for (;;) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return fs.realpathSync(candidate);
    if (dir === root || dir === path.dirname(dir)) return undefined;
    dir = path.dirname(dir);
  }
}

interface PackageJson {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

/** Every package directory needed by RUNTIME_PACKAGES, found from the fakes dir like Node would. */
export function runtimePackageDirs(repoRoot: string = path.resolve(FAKES_DIR, '..', '..')): string[] {
  const seen = new Set<string>();
  const queue: Array<{ name: string; from: string; required: boolean }> = RUNTIME_PACKAGES.map((name) => ({
    name,
    from: FAKES_DIR,
    required: true,
  }));
  while (queue.length > 0) {
    const { name, from, required } = queue.shift() as { name: string; from: string; required: boolean };
    const dir = resolvePackageDir(name, from, repoRoot);
    if (dir === undefined) {
      if (required)
        throw new Error(`fakes overlay: package ${name} (needed from ${from}) is not installed: run npm ci`);
      continue;
    }
    if (seen.has(dir)) continue;
    seen.add(dir);
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as PackageJson;
    for (const dep of Object.keys(pkg.dependencies ?? {})) queue.push({ name: dep, from: dir, required: true });
    for (const dep of Object.keys(pkg.optionalDependencies ?? {}))
      queue.push({ name: dep, from: dir, required: false });
    for (const dep of Object.keys(pkg.peerDependencies ?? {})) queue.push({ name: dep, from: dir, required: false });
  }
  return [...seen].sort();
}

export function fakesOverlayFiles(repoRoot: string = path.resolve(FAKES_DIR, '..', '..')): OverlayFile[] {
  const files: OverlayFile[] = [];
  const executable = (rel: string): boolean => rel.endsWith('.sh') || rel.startsWith(`bin${path.sep}`);
  walk(FAKES_DIR, (file) => {
    const rel = path.relative(FAKES_DIR, file);
    if (HOST_ONLY.has(rel)) return;
    files.push({
      src: file,
      dest: path.posix.join(FAKES_HOME, rel.split(path.sep).join('/')),
      mode: executable(rel) ? 0o755 : 0o644,
    });
  });
  // The upstream data the doubles check against (lib/upstream.mts): chart schemas, key trees, CRDs; all of it but
  // the provenance notes and the derivation script, so a newly vendored file cannot be forgotten here.
  const upstream = path.join(repoRoot, 'test', 'fixtures', 'upstream');
  walk(upstream, (file) => {
    if (file.endsWith('.md') || file.endsWith('.mts')) return;
    files.push({
      src: file,
      dest: path.posix.join(FAKES_HOME, 'upstream', path.relative(upstream, file).split(path.sep).join('/')),
      mode: 0o644,
    });
  });
  for (const tool of ['kubectl', 'helm']) {
    files.push({ src: path.join(FAKES_DIR, 'bin', tool), dest: `/usr/local/bin/${tool}`, mode: 0o755 });
  }
  const nodeModules = path.join(repoRoot, 'node_modules');
  for (const dir of runtimePackageDirs(repoRoot)) {
    const relPkg = path.relative(nodeModules, dir);
    if (relPkg.startsWith('..')) throw new Error(`fakes overlay: ${dir} is outside ${nodeModules}`);
    walk(
      dir,
      (file) => {
        if (SKIP_IN_PACKAGES.test(file)) return;
        const st = fs.statSync(file);
        files.push({
          src: file,
          dest: path.posix.join(FAKES_HOME, 'node_modules', path.relative(nodeModules, file).split(path.sep).join('/')),
          mode: st.mode & 0o111 ? 0o755 : 0o644,
        });
      },
      (d) => path.basename(d) === 'node_modules',
    );
  }
  return files;
}

if (process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.stdout.write(JSON.stringify(fakesOverlayFiles(), null, 2) + '\n');
}
