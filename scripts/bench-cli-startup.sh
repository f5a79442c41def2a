#!/usr/bin/env bash
# CLI start-up (docs/benchmarks.md "CLI start-up"): wall and CPU time (user + sys of the process
# and its children) of commands that answer without a server, over N runs each, with the load
# average before and after. A benchmark that prints its figures; nothing is asserted.
#
#   bash scripts/bench-cli-startup.sh [runs, default 10] [--compare DIR]
#
# --compare DIR adds the same CLI rows for another checkout with its dist/ built (e.g. the commit
# before lazy loading: `git archive 88c159f | tar -x -C DIR`, node_modules linked, then
# `bash DIR/scripts/build.sh`), measured in the same run, interleaved with the other rows.
#
# `bin/timeshare` includes its staleness check of dist/ (scripts/build.sh); the `node dist/...`
# rows are the CLI alone. The `require(...)` rows show what loading the Temporal SDK alone costs,
# which the commands below no longer pay.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-10}"
compare=""
if [[ "${2:-}" == --compare ]]; then
  compare="$(cd "${3:?--compare needs a folder}" && pwd)"
  [[ -f "${compare}/dist/src/cli/main.js" ]] || { echo "--compare: no ${compare}/dist/src/cli/main.js (run its scripts/build.sh)" >&2; exit 2; }
fi
cd "${root}"
bash scripts/build.sh
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; ${runs} runs per command"
python3 - "${runs}" "${compare}" <<'PY'
import os, resource, statistics, subprocess, sys, time

runs = int(sys.argv[1])
compare = sys.argv[2]
commands = [
    ("bin/timeshare --help", ["bin/timeshare", "--help"]),
    ("bin/timeshare status --help", ["bin/timeshare", "status", "--help"]),
    ("bin/timeshare worker orchestrator --help", ["bin/timeshare", "worker", "orchestrator", "--help"]),
    ("bin/timeshare check-config examples/multiplexed.yaml", ["bin/timeshare", "check-config", "examples/multiplexed.yaml"]),
    ("node dist/src/cli/main.js --help", ["node", "dist/src/cli/main.js", "--help"]),
    ("node dist/src/cli/main.js check-config examples/multiplexed.yaml", ["node", "dist/src/cli/main.js", "check-config", "examples/multiplexed.yaml"]),
]
if compare:
    commands += [
        (f"node {compare}/dist/src/cli/main.js --help", ["node", f"{compare}/dist/src/cli/main.js", "--help"]),
        (f"node {compare}/dist/src/cli/main.js check-config examples/multiplexed.yaml", ["node", f"{compare}/dist/src/cli/main.js", "check-config", "examples/multiplexed.yaml"]),
    ]
commands += [
    ("node -e 0 (Node itself)", ["node", "-e", "0"]),
    ("node -e \"require('@temporalio/client')\"", ["node", "-e", "require('@temporalio/client')"]),
    ("node -e \"require('@temporalio/worker')\"", ["node", "-e", "require('@temporalio/worker')"]),
]

def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

# Rounds over all commands (not one command N times in a row), so a change of load hits them alike.
walls = {label: [] for label, _ in commands}
cpus = {label: [] for label, _ in commands}
for _ in range(runs):
    for label, argv in commands:
        cpu0, t0 = children_cpu(), time.monotonic()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        walls[label].append(time.monotonic() - t0)
        cpus[label].append(children_cpu() - cpu0)
        if done.returncode != 0:
            sys.exit(f"{label}: exit {done.returncode}: {done.stderr.decode(errors='replace')}")

fmt = lambda values: f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"
print("| command | wall median (min-max) | CPU user+sys median (min-max) |")
print("|---|---|---|")
for label, _ in commands:
    print(f"| `{label}` | {fmt(walls[label])} | {fmt(cpus[label])} |")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
