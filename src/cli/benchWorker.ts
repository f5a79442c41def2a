/** A worker thread of `timeshare bench`: runs the bench jobs it is sent, one at a time (benchJobs.ts). */
import { parentPort } from 'node:worker_threads';
import { runBenchJob, type BenchJob } from './benchJobs';

if (parentPort === null) throw new Error('benchWorker runs as a worker thread of timeshare bench');
const port = parentPort;
port.on('message', (job: BenchJob) => {
  try {
    port.postMessage({ result: runBenchJob(job) });
  } catch (error) {
    port.postMessage(error instanceof Error ? { error: error.message, stack: error.stack } : { error: String(error) });
  }
});
