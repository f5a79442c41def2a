/** Defaults that the help text shows, kept apart from the modules that use them so `--help` loads none of those. */

/** Local state of `dev`, the workers and `chaos` (dev server database, engine state, logs). */
export const DEFAULT_STATE_DIR = '.timeshare';
/** Default --server-wait of the watchers that follow a run to its end (`dev`, `start --watch`). */
export const WATCH_SERVER_WAIT_SECONDS = 300;
/** Default --server-wait of one-shot commands (`status`). */
export const STATUS_SERVER_WAIT_SECONDS = 30;
