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
echo "== reference engine (pytest)"
(cd engines/reference && ../../.cache/pyenv/bin/python -m pytest -q -p no:cacheprovider tests)
echo "== OpenEnv test environment (pytest)"
(cd engines/openenv-env && ../../.cache/pyenv/bin/python -m pytest -q -p no:cacheprovider tests)
echo "== tests"
mkdir -p .timeshare
results=.timeshare/test-results.json
status=0
npx vitest run --reporter=default --reporter=json --outputFile="${results}" "$@" || status=$?
# One plain closing line, whatever the runner printed above.
node -e '
  const r = require(require("node:path").resolve(process.argv[1]));
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "${results}"
exit "${status}"
