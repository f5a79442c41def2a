#!/usr/bin/env bash
# Installs what the project needs on a fresh machine: npm packages (exact, from the lockfile)
# and the pinned temporal CLI. Cheap when everything is already there.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

if ! command -v node >/dev/null; then
  echo "ensure-deps: Node.js >= 20 is required (https://nodejs.org)" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "ensure-deps: Node.js >= 20 is required, found $(node --version)" >&2
  exit 1
fi

# npm ci when node_modules is missing or older than the lockfile.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "ensure-deps: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi

bash scripts/provision-temporal.sh >/dev/null
