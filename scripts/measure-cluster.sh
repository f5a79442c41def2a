#!/usr/bin/env bash
# Figures of the PostgreSQL-backed production path (docs/reliability.md, "PostgreSQL-backed
# cluster"): `cluster.sh up` on a fresh state folder (initdb, schema, namespace, search
# attributes), `up` again after `down` (everything cached), the cluster path on
# examples/multiplexed.yaml (3 iterations), `down`, and `npm run test:cluster`; each with the load
# average. With --cold-build it first builds the server and its SQL tool from the Go module proxy
# with empty Go caches in a temporary folder (the first build; the project's cache is left alone).
#
#   bash scripts/measure-cluster.sh [--cold-build]
#
# Ports: TIMESHARE_CLUSTER_PORT (default 27433, and the next 9) and TIMESHARE_PG_PORT (default 57433).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d /tmp/timeshare-measure-cluster-XXXXXX)"
chmod 755 "${work}" # PostgreSQL runs as the postgres user when this runs as root
export TIMESHARE_CLUSTER_DIR="${work}/cluster"
export TIMESHARE_CLUSTER_PORT="${TIMESHARE_CLUSTER_PORT:-27433}"
export TIMESHARE_PG_PORT="${TIMESHARE_PG_PORT:-57433}"
cleanup() {
  bash "${root}/scripts/cluster.sh" down || true
  chmod -R u+w "${work}" 2> /dev/null || true # the Go module cache is read-only
  rm -rf "${work}"
}
trap cleanup EXIT

figures=()
# Runs a command and records its wall time with the 1-minute load average at its end.
timed() {
  local label="$1" start end
  shift
  start="$(date +%s.%N)"
  "$@"
  end="$(date +%s.%N)"
  figures+=("$(printf '%-42s %8.1f s   load %s' "${label}" "$(echo "${end} - ${start}" | bc)" "$(cut -d' ' -f1 /proc/loadavg)")")
}

if [[ "${1:-}" == "--cold-build" ]]; then
  timed "first build (empty Go caches)" env TIMESHARE_CLUSTER_BUILD_DIR="${work}/build" GOCACHE="${work}/gocache" \
    GOMODCACHE="${work}/gomod" GOFLAGS="-modcacherw -buildvcs=false" bash -c "source '${root}/scripts/cluster.sh' && build_server"
fi

config="${work}/multiplexed.yaml"
sed -e "s|^  dir: .timeshare/store|  dir: ${work}/store|" "${root}/examples/multiplexed.yaml" > "${config}"
grep -q "dir: ${work}/store" "${config}" || { echo "measure-cluster: could not set store.dir in ${config}" >&2; exit 1; }

timed "up, fresh state (initdb, schema, namespace)" bash "${root}/scripts/cluster.sh" up
timed "down" bash "${root}/scripts/cluster.sh" down
timed "up, cached (existing data)" bash "${root}/scripts/cluster.sh" up
timed "run examples/multiplexed.yaml (3 iterations)" bash "${root}/scripts/cluster.sh" run "${config}" > "${work}/run.log"
tail -1 "${work}/run.log"
timed "down" bash "${root}/scripts/cluster.sh" down
timed "npm run test:cluster" npm --prefix "${root}" run test:cluster

echo
echo "cluster figures ($(nproc) CPUs):"
printf '  %s\n' "${figures[@]}"
