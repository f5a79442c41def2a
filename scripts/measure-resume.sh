#!/usr/bin/env bash
# Resume time of `timeshare dev` after a SIGKILL of everything it started (docs/reliability.md):
# runs examples/multiplexed.yaml for many iterations, kills the whole process group (the CLI, the
# Temporal dev server, every worker) every 5-10 s, restarts the same command, and measures restart
# → first progress line. Prints each figure, the median, the load average, and whether the run's
# trained-sample count still grew across the kills. With --compare, every other restart starts
# with an empty workflow bundle cache (the workers rebuild the bundle, as they did at every start
# before it was cached), so both figures come from one run under the same load.
#
#   bash scripts/measure-resume.sh [kills, default 8] [--compare]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kills="${1:-8}"
compare="${2:-}"
work="$(mktemp -d /tmp/timeshare-resume-XXXXXX)"
config="${work}/resume.yaml"
# The run's store lives in the scratch folder too: a store left by an earlier measurement (same
# run id) would hand this run samples it never admitted.
sed -e 's/^  iterations: .*/  iterations: 200/' -e "s#^  dir: .timeshare/store#  dir: ${work}/store#" "${root}/examples/multiplexed.yaml" > "${config}"
grep -q "dir: ${work}/store" "${config}" || { echo "measure-resume: could not point the store into ${work} (examples/multiplexed.yaml changed?)" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
ui_port="$(free_port)"
pgid=""
started=""
cleanup() {
  if [[ -n "${pgid}" ]]; then kill -KILL -- "-${pgid}" 2>/dev/null || true; fi
  rm -rf "${work}"
}
trap cleanup EXIT

# Starts `timeshare dev` in its own process group (in this shell, so $pgid and $started stay set).
start_dev() {
  started="$(date +%s.%N)"
  setsid "${root}/bin/timeshare" dev "${config}" --state-dir "${work}/state" --port "${port}" --ui-port "${ui_port}" > "$1" 2>&1 &
  pgid=$!
}

# Seconds from the last start_dev until its log shows the first progress line.
time_to_progress() {
  local log="$1" now
  for _ in $(seq 1 3000); do
    if grep -q '^iter ' "${log}" 2>/dev/null; then
      now="$(date +%s.%N)"
      python3 -c "print(f'{${now} - ${started}:.2f}')"
      return 0
    fi
    if ! kill -0 "${pgid}" 2>/dev/null; then
      echo "timeshare dev exited before a progress line; log:" >&2
      cat "${log}" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "no progress line within 150 s; log:" >&2
  tail -20 "${log}" >&2
  return 1
}

trained() { grep '^iter ' "$1" | tail -1 | sed -E 's/.*samples: ([0-9]+) trained.*/\1/'; }

start_dev "${work}/dev-0.log"
echo "first start (builds the workflow bundle if this code version is not cached yet): $(time_to_progress "${work}/dev-0.log") s"
sleep 5
first_trained="$(trained "${work}/dev-0.log")"
figures=()
rebuilt=()
for i in $(seq 1 "${kills}"); do
  if [[ "${compare}" == --compare && $((i % 2)) == 0 ]]; then
    export TIMESHARE_BUNDLE_CACHE="${work}/empty-bundle-cache-${i}"
    mode="empty bundle cache"
  else
    unset TIMESHARE_BUNDLE_CACHE
    mode="cached bundle"
  fi
  sleep "$((5 + RANDOM % 6))"
  before="$(trained "${work}/dev-$((i - 1)).log")"
  kill -KILL -- "-${pgid}"
  wait "${pgid}" 2>/dev/null || true
  start_dev "${work}/dev-${i}.log"
  seconds="$(time_to_progress "${work}/dev-${i}.log")"
  if [[ "${mode}" == "cached bundle" ]]; then figures+=("${seconds}"); else rebuilt+=("${seconds}"); fi
  echo "kill ${i}: trained before the kill ${before}; restart (${mode}) → first progress line ${seconds} s"
done
sleep 5
last_trained="$(trained "${work}/dev-${kills}.log")"
python3 - "${figures[*]}" "${rebuilt[*]:-}" <<'EOF'
import statistics, sys
for label, text in (("cached bundle", sys.argv[1]), ("empty bundle cache", sys.argv[2])):
    values = sorted(float(v) for v in text.split())
    if values:
        print(f"restart ({label}) → first progress line over {len(values)} kills: median {statistics.median(values):.2f} s, min {values[0]:.2f} s, max {values[-1]:.2f} s")
EOF
echo "samples trained: ${first_trained} after the first start, ${last_trained} at the end"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
