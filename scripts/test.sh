#!/usr/bin/env bash
# The README's test command (`npm test`): installs what it needs, then typecheck, lint, the
# reference engine's pytest suite and the whole vitest suite (unit, property-based, and tests
# against a real Temporal dev server and real reference engine processes).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

bash scripts/ensure-deps.sh
echo "== build (dist/, when sources changed)"
bash scripts/build.sh
echo "== typecheck"
npx tsc -p tsconfig.json --noEmit
echo "== lint"
npx eslint src test scripts
# --capture=sys: pytest captures Python's output only, so what native code (torch, gloo, glibc)
# writes to stderr before it aborts the process reaches the log instead of a capture file that
# dies with the process.
echo "== reference engine (pytest)"
(cd engines/reference && ../../.cache/pyenv/bin/python -m pytest -q -p no:cacheprovider --capture=sys tests)
echo "== OpenEnv test environment (pytest)"
(cd engines/openenv-env && ../../.cache/pyenv/bin/python -m pytest -q -p no:cacheprovider --capture=sys tests)
echo "== tests"
mkdir -p .timeshare
status=0
run_vitest() {
  local results="$1"
  shift
  rm -f "${results}"
  npx vitest run --reporter=default --reporter=json --outputFile="${results}" "$@" || status=$?
  result_files+=("${results}")
}
result_files=()
# The simulator's validation compares the pipeline's decisions with the simulator's exactly only
# where the machine was not overloaded during its run (test/simulator/validation.test.ts): with
# no test files named, it runs after the others, alone.
alone=test/simulator/validation.test.ts
if [ "$#" -eq 0 ]; then
  run_vitest .timeshare/test-results.json --exclude "${alone}"
  echo "== tests run alone: ${alone}"
  run_vitest .timeshare/test-results-alone.json "${alone}"
else
  run_vitest .timeshare/test-results.json "$@"
fi
# One plain closing line, whatever the runner printed above.
node -e '
  const { resolve } = require("node:path");
  const runs = process.argv.slice(1).map((file) => require(resolve(file)));
  const sum = (key) => runs.reduce((total, r) => total + r[key], 0);
  console.log(`tests: ${sum("numPassedTests")} passed, ${sum("numFailedTests")} failed, ${sum("numPendingTests") + sum("numTodoTests")} skipped`);
' "${result_files[@]}"
exit "${status}"
