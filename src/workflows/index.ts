// The workflow bundle's entry point: every workflow type the orchestrator worker runs.
export { runWorkflow } from './run';
export { iterationWorkflow } from './iteration';
