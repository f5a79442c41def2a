/**
 * Worker Versioning (docs/design.md §5.2): the orchestrator worker runs as one version of a Worker
 * Deployment, named after the run's task-queue prefix, its build id the workflow bundle's content
 * hash. Workflows are PINNED to the version that started them; the run workflow moves to the
 * current version at its continue-as-new. New workflows go to the deployment's current version,
 * which a worker sets when told to (`dev`, `worker orchestrator --set-current`) or when the
 * deployment has none yet.
 */
import { temporal } from '@temporalio/proto';
import type { NativeConnection, WorkerDeploymentOptions } from '@temporalio/worker';
import { z } from 'zod';

type WorkflowService = temporal.api.workflowservice.v1.WorkflowService;
const { VersioningBehavior, WorkflowExecutionStatus } = temporal.api.enums.v1;

export interface DeploymentVersion {
  deploymentName: string;
  buildId: string;
}

/** `always`: make this version current; `if-none`: only when the deployment has no current version; `never`: leave it. */
export type SetCurrentPolicy = 'always' | 'if-none' | 'never';

const BUILD_ID = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/, { error: 'expected a build id matching [A-Za-z0-9][A-Za-z0-9_-]{0,99}' });

/** A deployment name may not contain '.' (the canonical version string is `<name>.<build id>`). */
export const deploymentNameFor = (taskQueuePrefix: string): string => taskQueuePrefix.replaceAll('.', '_');

export function checkBuildId(buildId: string, source: string): string {
  const parsed = BUILD_ID.safeParse(buildId);
  if (!parsed.success) throw new Error(`${source}: ${parsed.error.issues.map((issue) => issue.message).join('; ')} (got '${buildId}')`);
  return parsed.data;
}

export const canonicalVersion = (version: DeploymentVersion): string => `${version.deploymentName}.${version.buildId}`;

export function versionedWorkerOptions(version: DeploymentVersion): WorkerDeploymentOptions {
  return { useWorkerVersioning: true, version, defaultVersioningBehavior: 'PINNED' };
}

function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 5;
}

/** The deployment's current version (canonical string), or undefined when it has none or does not exist yet. */
export async function currentVersion(connection: { workflowService: WorkflowService }, namespace: string, deploymentName: string): Promise<DeploymentVersion | undefined> {
  try {
    const described = await connection.workflowService.describeWorkerDeployment({ namespace, deploymentName });
    const current = described.workerDeploymentInfo?.routingConfig?.currentDeploymentVersion;
    return current?.buildId ? { deploymentName: current.deploymentName ?? deploymentName, buildId: current.buildId } : undefined;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw new Error(`describing Worker Deployment '${deploymentName}' failed: ${String(error)}`);
  }
}

/**
 * Makes `version` the deployment's current version under `policy`. Allowed before the worker has
 * polled (`allowNoPollers`), so new workflows are never left without a version to go to.
 * Returns what it did.
 */
export async function setCurrentVersion(
  connection: NativeConnection,
  namespace: string,
  version: DeploymentVersion,
  policy: SetCurrentPolicy,
): Promise<'set' | 'already current' | `kept ${string}`> {
  const current = await currentVersion(connection, namespace, version.deploymentName);
  if (current?.buildId === version.buildId) return 'already current';
  if (policy === 'never') return `kept ${current === undefined ? 'none' : canonicalVersion(current)}`;
  if (current !== undefined && policy === 'if-none') return `kept ${canonicalVersion(current)}`;
  try {
    await connection.workflowService.setWorkerDeploymentCurrentVersion({
      namespace,
      deploymentName: version.deploymentName,
      buildId: version.buildId,
      allowNoPollers: true,
      ignoreMissingTaskQueues: true,
      identity: `timeshare-${process.pid}`,
    });
  } catch (error) {
    throw new Error(`setting ${canonicalVersion(version)} as the current version failed: ${String(error)}`);
  }
  return 'set';
}

/**
 * The build ids a run's open workflows are PINNED to (the run workflow and its running iteration,
 * its one pending child), each with the ids of the workflows pinned to it. Read by describing
 * them, not from visibility, which lags. A run that is not open pins nothing.
 */
export async function pinnedBuildIds(service: WorkflowService, namespace: string, runWorkflowId: string): Promise<Map<string, string[]>> {
  const pinned = new Map<string, string[]>();
  const describe = async (workflowId: string, runId?: string) => {
    try {
      return await service.describeWorkflowExecution({ namespace, execution: { workflowId, ...(runId ? { runId } : {}) } });
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw new Error(`describing workflow '${workflowId}' for its pinned version failed: ${String(error)}`);
    }
  };
  const note = (workflowId: string, described: temporal.api.workflowservice.v1.IDescribeWorkflowExecutionResponse): void => {
    const info = described.workflowExecutionInfo;
    if (info?.status !== WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING) return;
    const versioning = info.versioningInfo;
    const buildId = versioning?.behavior === VersioningBehavior.VERSIONING_BEHAVIOR_PINNED ? versioning.deploymentVersion?.buildId : undefined;
    if (buildId) pinned.set(buildId, [...(pinned.get(buildId) ?? []), workflowId]);
  };
  const run = await describe(runWorkflowId);
  if (run === undefined) return pinned;
  note(runWorkflowId, run);
  for (const child of run.pendingChildren ?? []) {
    if (!child.workflowId) continue;
    const described = await describe(child.workflowId, child.runId ?? undefined);
    if (described !== undefined) note(child.workflowId, described);
  }
  return pinned;
}
