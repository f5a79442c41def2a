/**
 * The workers of one run inside this process (tests, the in-process bench mode): the orchestrator
 * and every gpu-node worker of the config, on one connection.
 */
import { NativeConnection, type Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { createGpuNodeWorkers, nodeTaskQueues } from '../workers/gpuNode';
import type { WorkerContext } from '../workers/options';
import type { CachedWorkflowBundle } from '../workers/bundle';
import { disposeUnstarted } from '../workers/lifecycle';
import { createOrchestratorWorker } from '../workers/orchestrator';

export interface InProcessWorkers {
  workers: Worker[];
  /** Shuts every worker down, closes the connection; rethrows the first worker failure. */
  stop(): Promise<void>;
}

export interface InProcessOptions {
  /** A workflow bundle built once (bundling takes seconds); default: each start bundles src/workflows. */
  workflowBundle?: WorkflowBundleOption | CachedWorkflowBundle;
  batchPollMs?: number;
}

export async function startInProcessWorkers(context: WorkerContext, options: InProcessOptions = {}): Promise<InProcessWorkers> {
  const connection = await NativeConnection.connect({ address: context.temporal.address });
  const workers: Worker[] = [];
  try {
    workers.push(
      await createOrchestratorWorker(connection, context, {
        ...(options.workflowBundle === undefined ? {} : { workflowBundle: options.workflowBundle }),
        ...(options.batchPollMs === undefined ? {} : { batchPollMs: options.batchPollMs }),
      }),
    );
    const { layout, config } = context.parsed;
    for (let node = 0; node < layout.nodes; node++) {
      if (nodeTaskQueues(layout, config.temporal.taskQueuePrefix, node).length === 0) continue;
      workers.push(...(await createGpuNodeWorkers(connection, context, node)));
    }
  } catch (error) {
    await disposeUnstarted(workers, error);
    await connection.close();
    throw error;
  }
  const runs = workers.map((worker) => worker.run());
  let stopped: Promise<void> | undefined;
  return {
    workers,
    stop() {
      stopped ??= (async () => {
        for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
        const results = await Promise.allSettled(runs);
        await connection.close();
        const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
      })();
      return stopped;
    },
  };
}
