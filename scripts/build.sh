#!/usr/bin/env bash
# Compiles src/ to dist/ (incremental tsc) when a source is newer than the last build, so the
# CLI and the worker processes it starts run plain JavaScript instead of transpiling TypeScript
# at every start. Called by bin/timeshare, `npm run build`, `npm run dev`, `npm test` and the
# test suite's global setup; concurrent callers wait for one build (flock).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dist="${root}/dist"
stamp="${dist}/.build-stamp"

stale() {
  [[ ! -f "${stamp}" || ! -f "${dist}/src/cli/main.js" ]] ||
    [[ -n "$(find "${root}/src" "${root}/tsconfig.json" "${root}/tsconfig.build.json" "${root}/package-lock.json" -newer "${stamp}" -print -quit)" ]]
}

stale || exit 0
mkdir -p "${dist}"
exec 9>"${dist}/.build-lock"
flock 9
stale || exit 0
# The stamp takes the time the build starts: a source saved during the build makes it stale again.
touch "${stamp}.next"
if ! node "${root}/node_modules/typescript/bin/tsc" -p "${root}/tsconfig.build.json" >&2; then
  echo "timeshare: building dist/ from src/ failed (errors above); fix them and run again" >&2
  exit 1
fi
mv "${stamp}.next" "${stamp}"
