#!/usr/bin/env bash
# Installs what the project needs on a fresh machine: npm packages (exact, from the lockfile),
# the pinned temporal CLI and the reference engine's Python venv. Cheap when everything is there.
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

# Install when node_modules is missing or older than the lockfile. `npm install` (which keeps the
# versions the committed lockfile pins) rather than `npm ci`: npm 11.19 writes lockfiles without
# other platforms' optional packages (@swc/core-*, @rollup/rollup-*) and then refuses them in
# `npm ci` ("Missing: ... from lock file"), even for a lockfile it has just written itself.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "ensure-deps: installing npm packages (npm install, versions from package-lock.json)" >&2
  npm install --no-audit --no-fund >&2
fi

bash scripts/provision-temporal.sh >/dev/null
# The reference engine (real-engine tests) needs Python + torch; `--no-python` skips it (the
# simulated dev run does not need it).
if [[ "${1:-}" != "--no-python" ]]; then
  bash scripts/ensure-python.sh
  # Headless Chromium (Debian's package) for the Temporal UI screenshot test (test/ui/screenshots.test.ts).
  if ! command -v chromium >/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
      echo "ensure-deps: installing chromium (apt-get)" >&2
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
    else
      echo "ensure-deps: chromium is missing and cannot be installed here (needs root and apt-get); the UI screenshot test will fail until Debian's chromium package is installed" >&2
    fi
  fi
fi
