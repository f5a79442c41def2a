/**
 * Children that end with their parent. A process we start (Temporal dev server, worker) must not
 * outlive the process that started it, however that one dies: SIGKILL and OOM kills included,
 * where no exit handler runs. On Linux the kernel does it: the child is started through
 * `setpriv --pdeathsig TERM` (util-linux), which sets PR_SET_PDEATHSIG and then execs the real
 * command, so the child keeps its pid and gets SIGTERM (a graceful stop) the moment its parent
 * dies. The parent is the thread that spawned the child: Node spawns from the main thread.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** A command line: what to run and its arguments. */
export interface Invocation {
  command: string;
  args: string[];
}

let setprivPath: string | undefined;

function findSetpriv(): string {
  if (setprivPath !== undefined) return setprivPath;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/bin', '/bin', '/usr/sbin', '/sbin'].filter((dir) => dir !== '');
  for (const dir of dirs) {
    const candidate = path.join(dir, 'setpriv');
    try {
      accessSync(candidate, constants.X_OK);
      setprivPath = candidate;
      return candidate;
    } catch {
      // not in this folder
    }
  }
  throw new Error(`setpriv (util-linux) not found in ${dirs.join(':')}: timeshare needs it so that the processes it starts end with it (apt-get install util-linux)`);
}

/**
 * The invocation wrapped so that the kernel sends the child SIGTERM when this process dies.
 * Elsewhere than Linux there is no such mechanism: the invocation is returned unchanged (worker
 * processes still watch their parent, `--exit-with-parent`; a dev server would outlive a killed
 * parent, a known gap).
 */
export function endingWithParent(invocation: Invocation): Invocation {
  if (process.platform !== 'linux') return invocation;
  return { command: findSetpriv(), args: ['--pdeathsig', 'TERM', '--', invocation.command, ...invocation.args] };
}

/** `spawn`, with the child tied to this process's life (see endingWithParent). */
export function spawnOwned(invocation: Invocation, options: SpawnOptions): ChildProcess {
  const owned = endingWithParent(invocation);
  return spawn(owned.command, owned.args, options);
}
