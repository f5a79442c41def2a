// Tests start the real bin/timeshare: build dist/ once before they run (a no-op when it is fresh),
// so no test's first CLI call pays for the build inside its own timeout.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export default function buildOnce(): void {
  execFileSync('bash', [path.join(__dirname, '..', '..', 'scripts', 'build.sh')], { stdio: 'inherit' });
}
