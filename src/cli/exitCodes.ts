/**
 * What `timeshare` exit codes mean (README "Exit codes", docs/reliability.md). `dev` and the
 * watchers (`start --watch`, `status`) say with their code what happened to the run.
 */
export const EXIT = {
  /** The command did what was asked; for a watcher: the run finished. */
  ok: 0,
  /** Any other error (message on stderr). */
  error: 1,
  /** Invalid config or arguments. */
  usage: 2,
  /** The run workflow failed, was terminated, cancelled or timed out. */
  runFailed: 3,
  /** The Temporal server stayed unreachable longer than --server-wait; the run may still be going on. */
  serverUnreachable: 4,
  /** `dev`: a process it owns (the dev server) died and could not be started again. */
  supervisionFailed: 5,
  /** Interrupted (Ctrl-C, SIGTERM); the run is kept. */
  interrupted: 130,
} as const;
