#!/usr/bin/env bash
# The README's first command (`npm run dev`): installs what it needs, then runs the embedded
# default — a local Temporal dev server with its UI, the workers and simulated GPUs — on
# examples/multiplexed.yaml (or the config given as the first argument).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "${repo_root}/scripts/ensure-deps.sh" --no-python
exec "${repo_root}/bin/timeshare" dev "$@"
