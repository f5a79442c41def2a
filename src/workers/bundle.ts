/**
 * The workflow bundle, built once per code version and reused: webpack takes 13-49 s on a busy
 * 2-core machine, too long to pay at every worker start. The version is a content hash of what
 * goes into the bundle (the workflow entry, the payload converter module if any, every local module
 * they import, transitively, plus the locked dependency versions); it names the cached file and is the worker's default build id
 * (docs/design.md §5.2, Worker Versioning).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { WorkflowBundleOption, WorkflowBundlePath } from '@temporalio/worker';
import { repoRoot } from '../sourceFiles';

/** Bump when the way a bundle is built changes (bundler options), so old cache entries are not reused. */
const BUNDLE_RECIPE = 'timeshare-workflow-bundle-1';
/** Environment variable that moves the bundle cache (default: `<repo>/.cache/bundles`). */
export const BUNDLE_CACHE_ENV = 'TIMESHARE_BUNDLE_CACHE';
const BUILD_ID_HEX_CHARS = 16;

/** What a bundle is built from: the workflows and, optionally, the payload converter and preloaded modules bundled with them. */
export interface BundleInputs {
  workflowsPath: string;
  /** A module exporting `payloadConverter`, used inside the workflow sandbox (src/temporal/payloadConverter.ts). */
  payloadConverterPath?: string;
  /**
   * Modules evaluated once per worker thread and shared by every workflow (the SDK's
   * `preloadModules`; the rest of the bundle is evaluated again for each workflow the worker
   * creates). Shared modules are deep-frozen: only modules without per-workflow state belong here.
   */
  preloadModules?: readonly string[];
}

/**
 * The workflow bundle is built from the TypeScript sources even when this code runs compiled from
 * dist/ (webpack compiles them itself): one code version has one build id, and the bundle's content
 * hash follows every import.
 */
export const WORKFLOWS_PATH = path.join(repoRoot(), 'src', 'workflows', 'index.ts');

/** The workflows with the payload converter the workers use (so a payload that cannot be decoded reaches a validator). */
export const WORKFLOW_BUNDLE_INPUTS: BundleInputs = {
  workflowsPath: WORKFLOWS_PATH,
  payloadConverterPath: path.join(repoRoot(), 'src', 'temporal', 'payloadConverter.ts'),
  // zod, evaluated once per worker instead of at every workflow's creation (docs/benchmarks.md).
  preloadModules: [path.join(repoRoot(), 'src', 'workflows', 'preloaded.ts')],
};

export interface WorkflowSources {
  /** The workflow bundle's entry point. */
  entry: string;
  /** The payload converter bundled with the workflows, if any. */
  payloadConverterPath?: string;
  /** Every file the hash covers (entry, local imports, the lock file), repo-relative, sorted. */
  files: string[];
  /** Content hash of those files: the code version. */
  hash: string;
}

export interface CachedWorkflowBundle extends WorkflowBundlePath {
  /** The code version: a short content hash, usable as a Worker Deployment build id. */
  buildId: string;
  /** Whether this call built the bundle (false: it was in the cache). */
  built: boolean;
}

/** `import … from './x'`, `export … from '../y'`, `import './z'`, `import('./w')`: the specifier. */
const IMPORT_PATTERN = /(?:\bfrom\s+|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g;
const RESOLVE_SUFFIXES = ['', '.ts', '.tsx', '.js', '/index.ts', '/index.js'];

function resolveLocalImport(fromFile: string, specifier: string): string {
  const base = path.resolve(path.dirname(fromFile), specifier);
  for (const suffix of RESOLVE_SUFFIXES) {
    const candidate = base + suffix;
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  throw new Error(`workflow bundle: cannot resolve import '${specifier}' from ${fromFile}`);
}

/** The repository root: the nearest folder above the entry that holds a package.json. */
export function packageRoot(from: string): string {
  for (let dir = path.dirname(from); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`workflow bundle: no package.json above ${from}`);
  }
}

/** Local modules reachable from the entries by relative imports (packages are covered by the lock file). */
function localModules(entries: readonly string[]): string[] {
  const seen = new Set<string>();
  const pending = entries.map((entry) => path.resolve(entry));
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const match of readFileSync(file, 'utf8').matchAll(IMPORT_PATTERN)) {
      const specifier = match[1]!;
      if (specifier.startsWith('.')) pending.push(resolveLocalImport(file, specifier));
    }
  }
  return [...seen];
}

const bundleInputs = (inputs: string | BundleInputs): BundleInputs => (typeof inputs === 'string' ? { workflowsPath: inputs } : inputs);

/** What goes into the bundle of these inputs (a workflows entry, with a payload converter and preloaded modules if given), and its content hash. Pure reads; no bundling. */
export function workflowSources(inputs: string | BundleInputs): WorkflowSources {
  const { workflowsPath: entry, payloadConverterPath: converter, preloadModules = [] } = bundleInputs(inputs);
  const root = packageRoot(entry);
  const lockFile = path.join(root, 'package-lock.json');
  const entries = [entry, ...(converter === undefined ? [] : [converter]), ...preloadModules];
  const files = [...localModules(entries), ...(existsSync(lockFile) ? [lockFile] : [])]
    .map((file) => path.relative(root, file))
    .sort();
  const hash = createHash('sha256').update(BUNDLE_RECIPE).update('\0');
  // Which module is the converter matters too (the same files bundled without it are another bundle); so do the preloaded ones.
  hash.update(`payload converter: ${converter === undefined ? '(default)' : path.relative(root, path.resolve(converter))}`).update('\0');
  hash.update(`preloaded: ${preloadModules.map((file) => path.relative(root, path.resolve(file))).join(', ')}`).update('\0');
  for (const file of files) hash.update(file).update('\0').update(readFileSync(path.join(root, file))).update('\0');
  return { entry: path.resolve(entry), ...(converter === undefined ? {} : { payloadConverterPath: path.resolve(converter) }), files, hash: hash.digest('hex') };
}

export function bundleCacheDir(entry: string): string {
  return process.env[BUNDLE_CACHE_ENV] ?? path.join(packageRoot(entry), '.cache', 'bundles');
}

const quietLogger = {
  log: () => undefined,
  info: () => undefined,
  warn: (message: string) => console.error(message),
  error: (message: string) => console.error(message),
  debug: () => undefined,
  trace: () => undefined,
};

/**
 * The bundle of these inputs for their current sources: read from the cache, or built and written
 * there (atomically: concurrent workers never read a half-written file).
 */
export async function cachedWorkflowBundle(inputs: string | BundleInputs, cacheDir = bundleCacheDir(bundleInputs(inputs).workflowsPath)): Promise<CachedWorkflowBundle> {
  const { workflowsPath, payloadConverterPath, preloadModules } = bundleInputs(inputs);
  const { hash } = workflowSources(inputs);
  const buildId = buildIdOfHash(hash);
  const codePath = path.join(cacheDir, `${hash}.js`);
  if (existsSync(codePath)) return { codePath, buildId, built: false };
  // Loaded here, not at the top: reading the cache (and `dev`, which only looks up build ids) needs no webpack.
  const { bundleWorkflowCode } = await import('@temporalio/worker');
  const { code } = await bundleWorkflowCode({
    workflowsPath,
    ...(payloadConverterPath === undefined ? {} : { payloadConverterPath }),
    ...(preloadModules === undefined ? {} : { preloadModules: [...preloadModules] }),
    logger: quietLogger,
  });
  mkdirSync(cacheDir, { recursive: true });
  const partial = `${codePath}.${process.pid}.partial`;
  writeFileSync(partial, code);
  renameSync(partial, codePath);
  return { codePath, buildId, built: true };
}

const CACHED_BUNDLE_NAME = /^([0-9a-f]{64})\.js$/;

/** The build id a bundle of this content hash runs as. */
export const buildIdOfHash = (hash: string): string => hash.slice(0, BUILD_ID_HEX_CHARS);

/** The build id the current sources of these inputs run as, without bundling them. */
export const currentBuildId = (inputs: string | BundleInputs): string => buildIdOfHash(workflowSources(inputs).hash);

/** The cached bundle that runs as this build id, if the cache holds one (`<hash>.js`). */
export function cachedBundleOf(buildId: string, cacheDir: string): string | undefined {
  if (!existsSync(cacheDir)) return undefined;
  const names = readdirSync(cacheDir).filter((name) => {
    const hash = CACHED_BUNDLE_NAME.exec(name)?.[1];
    return hash !== undefined && buildIdOfHash(hash) === buildId;
  });
  return names.length === 0 ? undefined : path.join(cacheDir, names.sort()[0]!);
}

/**
 * The build id of a bundle given as an option: its own when it came from the cache (also a file of
 * the cache given by path, `<hash>.js`, so an older version keeps its build id), else a hash of its code.
 */
export function bundleBuildId(bundle: WorkflowBundleOption | CachedWorkflowBundle): string {
  if ('buildId' in bundle) return bundle.buildId;
  const cachedName = 'codePath' in bundle ? CACHED_BUNDLE_NAME.exec(path.basename(bundle.codePath)) : null;
  if (cachedName !== null) return buildIdOfHash(cachedName[1]!);
  const code = 'code' in bundle ? bundle.code : readFileSync(bundle.codePath, 'utf8');
  return createHash('sha256').update(code).digest('hex').slice(0, BUILD_ID_HEX_CHARS);
}
