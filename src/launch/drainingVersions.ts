/**
 * Workers for the versions a run is still pinned to (docs/design.md §5.2, Worker Versioning).
 * After a change to the workflow code, `dev` starts the new version's orchestrator and makes it
 * current; an iteration (and the run workflow around it) started on the old version stays pinned
 * to it and runs only where a worker of that version polls. This keeps one orchestrator per such
 * version running from its cached bundle until no open workflow of the run is pinned to it, then
 * stops it. A version whose bundle is not cached is named once, with what to do.
 */

/** A worker of one old version, as started by `start`. */
export interface VersionWorker {
  stop(): Promise<void>;
}

export interface DrainingVersionsOptions {
  /** Build id → ids of the run's open workflows pinned to it (src/workers/versioning.ts `pinnedBuildIds`). */
  probe: () => Promise<Map<string, string[]>>;
  /** The version `dev`'s own orchestrator runs (of the sources as they are now): never started here. */
  currentBuildId: () => string;
  /**
   * The build id of the deployment's current version (undefined: none yet). An old version's
   * worker starts only once another version is current: a run pinned to the old one would
   * otherwise see no newer version when its iteration ends, and start the next one there too.
   */
  deploymentCurrent: () => Promise<string | undefined>;
  /** The cached bundle of a build id, if any (src/workers/bundle.ts `cachedBundleOf`). */
  bundleOf: (buildId: string) => string | undefined;
  start: (buildId: string, bundlePath: string) => VersionWorker;
  log: (line: string) => void;
  /** Said when a pinned version has no cached bundle: how to run a worker of it by hand. */
  missingBundleHint: (buildId: string) => string;
}

export class DrainingVersions {
  private readonly running = new Map<string, VersionWorker>();
  private readonly missing = new Set<string>();
  /** Old versions waiting for a newer current version, said once each. */
  private readonly waiting = new Set<string>();
  private lastProbeError: string | undefined;
  /** Set by stopAll: a look still under way then starts nothing. */
  private closed = false;

  constructor(private readonly options: DrainingVersionsOptions) {}

  /** Build ids with a worker started here and not yet stopped. */
  get serving(): string[] {
    return [...this.running.keys()];
  }

  /**
   * One look: starts a worker for each old version the run is pinned to and that has none, stops
   * those whose version no open workflow is pinned to any more. A failed probe changes nothing
   * (the server may be restarting) and is said once until a probe succeeds again.
   */
  async reconcile(): Promise<void> {
    let pinned: Map<string, string[]>;
    let deploymentCurrent: string | undefined;
    const current = this.options.currentBuildId();
    try {
      pinned = await this.options.probe();
      // Asked only when an old version waits for a worker: most looks find none.
      const unserved = [...pinned.keys()].some((buildId) => buildId !== current && !this.running.has(buildId));
      if (unserved) deploymentCurrent = await this.options.deploymentCurrent();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (message !== this.lastProbeError) this.options.log(`could not read which versions the run is pinned to (will look again): ${message}`);
      this.lastProbeError = message;
      return;
    }
    this.lastProbeError = undefined;
    if (this.closed) return;
    for (const [buildId, workflowIds] of pinned) {
      if (buildId === current || this.running.has(buildId)) continue;
      if (deploymentCurrent === undefined || deploymentCurrent === buildId) {
        if (!this.waiting.has(buildId)) this.options.log(`${describePinned(buildId, workflowIds)}: its orchestrator worker starts once a newer version is current`);
        this.waiting.add(buildId);
        continue;
      }
      this.waiting.delete(buildId);
      const bundle = this.options.bundleOf(buildId);
      if (bundle === undefined) {
        if (!this.missing.has(buildId)) this.options.log(`${describePinned(buildId, workflowIds)}, whose workflow bundle is not cached: ${this.options.missingBundleHint(buildId)}`);
        this.missing.add(buildId);
        continue;
      }
      this.missing.delete(buildId);
      this.running.set(buildId, this.options.start(buildId, bundle));
      this.options.log(`${describePinned(buildId, workflowIds)}: started an orchestrator worker of that version from ${bundle}`);
    }
    for (const [buildId, worker] of [...this.running]) {
      if (pinned.has(buildId)) continue;
      this.running.delete(buildId);
      await worker.stop();
      this.options.log(`version ${buildId} drained (no open workflow of the run is pinned to it): its orchestrator worker stopped`);
    }
  }

  /**
   * Reconciles every `everyMs` until the returned function is called; that stops the loop, not
   * the workers, and waits at most `settleMs` for a look under way (one still under way then is
   * kept by stopAll from starting anything).
   */
  watch(everyMs: number, settleMs = 1_000): () => Promise<void> {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let pass: Promise<void> = Promise.resolve();
    const tick = (): void => {
      pass = this.reconcile()
        .catch((error: unknown) => this.options.log(`serving the run's older workflow code versions failed: ${error instanceof Error ? error.message : String(error)}`))
        .finally(() => {
          if (!stopped) timer = setTimeout(tick, everyMs);
        });
    };
    tick();
    return async () => {
      stopped = true;
      clearTimeout(timer);
      let waited: NodeJS.Timeout | undefined;
      await Promise.race([pass, new Promise<void>((resolve) => (waited = setTimeout(resolve, settleMs)))]);
      clearTimeout(waited);
    };
  }

  /** Stops every worker started here; nothing starts after it. */
  async stopAll(): Promise<void> {
    this.closed = true;
    const workers = [...this.running.values()];
    this.running.clear();
    await Promise.all(workers.map((worker) => worker.stop()));
  }
}

const describePinned = (buildId: string, workflowIds: readonly string[]): string =>
  `${workflowIds.join(' and ')} ${workflowIds.length === 1 ? 'is' : 'are'} pinned to the workflow code version ${buildId}`;
