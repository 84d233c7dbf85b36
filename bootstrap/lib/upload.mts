// What the launcher uploads to the server: bootstrap/, manifests/, the service's build context (app/: sources,
// package files, Dockerfile; never its node_modules or tests), package.json and the production node_modules
// (pure JS only), plus generated files (source.json), as one tar stream. The tree hash lets a re-run skip an
// identical upload.
import { readFileSync, readdirSync, statSync, existsSync, lstatSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createHash } from 'node:crypto';
import { OperationError } from './errors.mts';

interface LockPackage {
  dev?: boolean;
  devOptional?: boolean;
  optional?: boolean;
  link?: boolean;
}

/** node_modules/<pkg> directories needed at run time, from package-lock.json (no npm process needed). */
export function productionPackages(lockText: string): string[] {
  const lock = JSON.parse(lockText) as { packages?: Record<string, LockPackage> };
  if (!lock.packages)
    throw new OperationError(
      'package-lock.json has no "packages" map (lockfileVersion >= 2 expected); run npm install',
    );
  return Object.entries(lock.packages)
    .filter(([path, p]) => path.startsWith('node_modules/') && !p.dev && !p.devOptional && !p.link)
    .map(([path]) => path)
    .sort();
}

function walk(root: string, rel: string, out: string[]): void {
  const abs = join(root, rel);
  const st = lstatSync(abs);
  if (st.isSymbolicLink()) return; // .bin links are not needed on the server
  if (st.isDirectory()) {
    for (const name of readdirSync(abs).sort()) {
      if (rel === '' && name === 'node_modules') continue;
      walk(root, rel === '' ? name : join(rel, name), out);
    }
  } else if (st.isFile()) out.push(rel);
}

export interface UploadTree {
  /** Paths relative to the repository root, sorted; what tar packs. */
  files: string[];
  /** Files made by the launcher (name at the top level -> content), packed after `files`. */
  generated: Record<string, string>;
  /** sha256 over every path, mode and content. */
  hash: string;
  /** The top-level entries present (manifests/ may not exist yet), swapped in one by one on the server. */
  entries: string[];
}

/**
 * app/ as uploaded: what its Dockerfile builds from, and nothing else. The image is built on the server from
 * exactly these files (50_deploy_codex_k8s), so a test file or a laptop's node_modules never reaches it.
 */
export const APP_FILES = ['app/package.json', 'app/package-lock.json', 'app/Dockerfile', 'app/.dockerignore'] as const;
export const APP_SOURCE_DIR = 'app/src';

/** Test files and directories under app/src stay on the laptop. */
export function isAppTestPath(rel: string): boolean {
  return (
    rel.split('/').some((seg) => seg === 'node_modules' || seg === 'test' || seg === 'tests' || seg === '__tests__') ||
    /\.(test|spec)\.[cm]?[jt]s$/.test(rel)
  );
}

function appFiles(repoRoot: string): string[] {
  if (!existsSync(join(repoRoot, 'app'))) return [];
  const out: string[] = [];
  if (existsSync(join(repoRoot, APP_SOURCE_DIR))) walk(repoRoot, APP_SOURCE_DIR, out);
  out.push(...APP_FILES.filter((f) => existsSync(join(repoRoot, f))));
  return out.filter((f) => !isAppTestPath(f)).sort();
}

/**
 * Lists the files to upload. Nested node_modules of production packages come along with their parent;
 * a native addon (.node) is refused: the server runtime may not match the laptop's.
 */
export function buildUploadTree(repoRoot: string, generated: Record<string, string> = {}): UploadTree {
  const files: string[] = [];
  for (const dir of ['bootstrap', 'manifests']) if (existsSync(join(repoRoot, dir))) walk(repoRoot, dir, files);
  files.push(...appFiles(repoRoot));
  files.push('package.json');
  const lockPath = join(repoRoot, 'package-lock.json');
  if (!existsSync(lockPath)) throw new OperationError('package-lock.json is missing; run npm ci first');
  const pkgs = productionPackages(readFileSync(lockPath, 'utf8'));
  const seen = new Set<string>();
  for (const p of pkgs) {
    if (!existsSync(join(repoRoot, p))) throw new OperationError(`${p} is missing; run npm ci first`);
    // A nested production package (node_modules/a/node_modules/b) is inside its parent's walk already.
    if ([...seen].some((s) => p.startsWith(s + '/'))) continue;
    seen.add(p);
    const before = files.length;
    walkPackage(repoRoot, p, files);
    if (files.length === before) throw new OperationError(`${p} has no files; run npm ci`);
  }
  const native = files.filter((f) => f.endsWith('.node'));
  if (native.length > 0)
    throw new OperationError(
      `production dependencies contain native addons (${native.join(', ')}); only pure-JS packages can be uploaded`,
    );
  const h = createHash('sha256');
  for (const f of files) {
    const abs = join(repoRoot, f);
    h.update(`${f}\0${(statSync(abs).mode & 0o111) !== 0 ? 'x' : '-'}\0`);
    h.update(readFileSync(abs));
    h.update('\0');
  }
  const names = Object.keys(generated).sort();
  for (const name of names) {
    if (name.includes('/') || files.some((f) => f.split('/')[0] === name))
      throw new OperationError(`generated upload file ${name} must be a new top-level name`);
    h.update(`${name}\0-\0`);
    h.update(generated[name] as string);
    h.update('\0');
  }
  const entries = [...new Set([...files.map((f) => f.split('/')[0] as string), ...names])];
  return { files, generated, hash: h.digest('hex'), entries };
}

function walkPackage(root: string, rel: string, out: string[]): void {
  const abs = join(root, rel);
  for (const name of readdirSync(abs).sort()) {
    const childRel = join(rel, name);
    const st = lstatSync(join(root, childRel));
    if (st.isSymbolicLink()) continue;
    if (st.isDirectory()) walkPackage(root, childRel, out);
    else if (st.isFile()) out.push(relative(root, join(root, childRel)));
  }
}
