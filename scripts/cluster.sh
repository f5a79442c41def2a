#!/usr/bin/env bash
# A PostgreSQL-backed Temporal server on this machine, the production path without Docker
# (deploy/README.md): the server and its SQL tool built from the Go module proxy and cached,
# PostgreSQL from the machine or Debian's packages, schema set up, the `default` namespace and
# the project's search attributes created.
#
#   bash scripts/cluster.sh up               # build (first time), start PostgreSQL and Temporal
#   bash scripts/cluster.sh run <config>     # the README's cluster path: workers + start --watch
#   bash scripts/cluster.sh down             # stop Temporal and PostgreSQL (data kept)
#   bash scripts/cluster.sh status
#
# Environment: TIMESHARE_CLUSTER_DIR (state: data, config, logs, pids; default .timeshare/cluster),
# TIMESHARE_CLUSTER_PORT (Temporal front end, default 7233; the services use the next 9 ports, all
# ≤ 32767), TIMESHARE_PG_PORT (default 55432), TEMPORAL_SERVER_VERSION (default 1.32.0, the server
# of the pinned CLI), TIMESHARE_CLUSTER_BUILD_DIR (the built server and schema files, default
# .cache/cluster/server-<version>). `up` is idempotent: it starts what is not running and sets up what is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${TEMPORAL_SERVER_VERSION:-1.32.0}"
build_dir="${TIMESHARE_CLUSTER_BUILD_DIR:-${root}/.cache/cluster/server-${version}}"
bin_dir="${build_dir}/bin"
state="${TIMESHARE_CLUSTER_DIR:-${root}/.timeshare/cluster}"
port="${TIMESHARE_CLUSTER_PORT:-7233}"
pg_port="${TIMESHARE_PG_PORT:-55432}"
pg_data="${state}/pg"
address="127.0.0.1:${port}"
[[ "${port}" =~ ^[0-9]+$ && "${pg_port}" =~ ^[0-9]+$ ]] || { echo "cluster: TIMESHARE_CLUSTER_PORT and TIMESHARE_PG_PORT must be port numbers" >&2; exit 2; }
# The server records its membership ports in a SMALLINT column (cluster_membership.rpc_port):
# a port above 32767 makes it exit at start with "value ... is out of range for type smallint".
if ((port < 1024 || port + 9 > 32767)); then
  echo "cluster: TIMESHARE_CLUSTER_PORT=${port}: the server uses it and the next 9 ports, which must lie in 1024-32767" >&2
  exit 2
fi
db_user=temporal
db_password=temporal

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }
temporal_cli() { "$(bash "${root}/scripts/provision-temporal.sh")" "$@"; }

build_server() {
  if [[ -x "${bin_dir}/temporal-server" && -x "${bin_dir}/temporal-sql-tool" && -d "${build_dir}/schema" ]]; then return; fi
  command -v go > /dev/null || die "go is not installed (needed once to build the Temporal server ${version})"
  log "building Temporal server ${version} and its SQL tool from the Go module proxy (minutes; cached in ${build_dir})"
  mkdir -p "${bin_dir}"
  GOBIN="${bin_dir}" GOFLAGS="${GOFLAGS:--buildvcs=false}" go install \
    "go.temporal.io/server/cmd/server@v${version}" "go.temporal.io/server/cmd/tools/sql@v${version}"
  mv "${bin_dir}/server" "${bin_dir}/temporal-server"
  mv "${bin_dir}/sql" "${bin_dir}/temporal-sql-tool"
  local module
  module="$(go env GOMODCACHE)/go.temporal.io/server@v${version}"
  rm -rf "${build_dir}/schema.partial"
  cp -r "${module}/schema" "${build_dir}/schema.partial"
  chmod -R u+w "${build_dir}/schema.partial"
  mv "${build_dir}/schema.partial" "${build_dir}/schema"
}

# PostgreSQL binaries: on PATH, under /usr/lib/postgresql, or installed from Debian's packages.
pg_bin() {
  local dir
  if command -v pg_ctl > /dev/null && command -v initdb > /dev/null; then dirname "$(command -v pg_ctl)"; return; fi
  dir="$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1 || true)"
  if [[ -n "${dir}" ]]; then echo "${dir}"; return; fi
  [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed; install it (apt-get install postgresql) or run as root"
  log "installing PostgreSQL from Debian's packages"
  apt-get install -y postgresql > /dev/null
  ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1
}

# initdb and postgres refuse to run as root: as root they run as the `postgres` user.
as_pg_user() {
  if [[ "$(id -u)" == 0 ]]; then
    id postgres > /dev/null 2>&1 || useradd --system --no-create-home postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A process that exited but was not reaped yet (a zombie) still answers `kill -0`: not alive.
alive() {
  local state
  state="$(ps -o stat= -p "$1" 2> /dev/null)" || return 1
  [[ -n "${state}" && "${state}" != Z* ]]
}

# Waits up to $2 seconds for process $1 to exit.
wait_exit() {
  local pid="$1" seconds="$2"
  for _ in $(seq 1 $((seconds * 4))); do
    alive "${pid}" || return 0
    sleep 0.25
  done
  return 1
}

pg_running() { [[ -f "${pg_data}/postmaster.pid" ]] && alive "$(head -1 "${pg_data}/postmaster.pid")"; }

start_postgres() {
  local bin
  bin="$(pg_bin)"
  mkdir -p "${state}/logs"
  if [[ "$(id -u)" == 0 ]] && ! runuser -u postgres -- test -x "${state}"; then
    die "the postgres user cannot reach ${state} (a parent folder is not searchable by others); use another TIMESHARE_CLUSTER_DIR"
  fi
  if [[ ! -f "${pg_data}/PG_VERSION" ]]; then
    log "initialising PostgreSQL in ${pg_data}"
    mkdir -p "${pg_data}"
    [[ "$(id -u)" == 0 ]] && chown postgres "${pg_data}" "${state}/logs"
    chmod 700 "${pg_data}"
    as_pg_user "${bin}/initdb" -D "${pg_data}" -U "${db_user}" --auth=trust > "${state}/logs/initdb.log"
  fi
  [[ "$(id -u)" == 0 ]] && chown postgres "${state}/logs"
  if pg_running; then return; fi
  rm -f "${pg_data}/postmaster.pid"
  log "starting PostgreSQL on 127.0.0.1:${pg_port}"
  as_pg_user "${bin}/pg_ctl" -D "${pg_data}" -l "${state}/logs/postgres.log" -w -t 120 \
    -o "-p ${pg_port} -k ${pg_data} -c listen_addresses=127.0.0.1" start > /dev/null
}

sql_tool() {
  "${bin_dir}/temporal-sql-tool" --plugin postgres12 --ep 127.0.0.1 -p "${pg_port}" -u "${db_user}" --pw "${db_password}" "$@"
}

setup_schema() {
  local schema="${build_dir}/schema/postgresql/v12" db dir
  for db in temporal temporal_visibility; do
    dir=temporal
    [[ "${db}" == temporal_visibility ]] && dir=visibility
    if [[ ! -f "${state}/schema-${db}.done" ]]; then
      log "creating database ${db} and its schema"
      sql_tool --db "${db}" create-database > "${state}/logs/schema-${db}.log" 2>&1 || true
      sql_tool --db "${db}" setup-schema -v 0.0 >> "${state}/logs/schema-${db}.log" 2>&1
      touch "${state}/schema-${db}.done"
    fi
    # Idempotent: applies only the versions the database does not have yet.
    sql_tool --db "${db}" update-schema -d "${schema}/${dir}/versioned" >> "${state}/logs/schema-${db}.log" 2>&1
  done
}

write_server_config() {
  local p=$((port))
  mkdir -p "${state}/config"
  cat > "${state}/config/dynamicconfig.yaml" << EOF
# Search attributes registered by this script are visible at once (as on the dev server).
system.forceSearchAttributesCacheRefreshOnRead:
  - value: true
    constraints: {}
# Events that arrive while a workflow task runs are buffered; past this many (default 100) the
# server fails that task and the worker replays the history. Stopping the shards of 64+ ranks at
# once sends more than 100 (docs/benchmarks.md, "Scale run").
history.maximumBufferedEventsBatch:
  - value: 1000
    constraints: {}
# A history shard reads its transfer and timer tasks at most 20 times a second by default; a
# transition is a chain of such tasks in one workflow, each waiting for the next read past the
# limiter's burst (docs/benchmarks.md, "The history service's task reads").
history.transferProcessorMaxPollRPS:
  - value: 1000
    constraints: {}
history.timerProcessorMaxPollRPS:
  - value: 1000
    constraints: {}
EOF
  cat > "${state}/config/server.yaml" << EOF
log:
  stdout: true
  level: warn
persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: 4
  datastores:
    postgres-default:
      sql: &sql
        pluginName: postgres12
        databaseName: temporal
        connectAddr: "127.0.0.1:${pg_port}"
        connectProtocol: tcp
        user: ${db_user}
        password: ${db_password}
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: 1h
    postgres-visibility:
      sql:
        <<: *sql
        databaseName: temporal_visibility
        maxConns: 4
        maxIdleConns: 4
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
  metrics:
    prometheus:
      framework: tally
      timerType: histogram
      listenAddress: "127.0.0.1:$((p + 9))"
services:
  frontend:
    rpc: { grpcPort: ${p}, membershipPort: $((p + 1)), bindOnLocalHost: true, httpPort: $((p + 8)) }
  history:
    rpc: { grpcPort: $((p + 2)), membershipPort: $((p + 3)), bindOnLocalHost: true }
  matching:
    rpc: { grpcPort: $((p + 4)), membershipPort: $((p + 5)), bindOnLocalHost: true }
  worker:
    rpc: { grpcPort: $((p + 6)), membershipPort: $((p + 7)), bindOnLocalHost: true }
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "127.0.0.1:${p}"
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: "${state}/config/dynamicconfig.yaml"
  pollInterval: 10s
EOF
}

server_running() { [[ -f "${state}/temporal-server.pid" ]] && alive "$(cat "${state}/temporal-server.pid")"; }

# SIGTERM, then SIGKILL if the server has not exited within 60 s: a server still shutting down
# holds its ports, and a new one started beside it would fail to bind them.
stop_server() {
  local pid
  pid="$(cat "${state}/temporal-server.pid")"
  kill "${pid}" 2> /dev/null || true
  if ! wait_exit "${pid}" 60; then
    log "the Temporal server (pid ${pid}) did not exit within 60 s of SIGTERM: SIGKILL"
    kill -KILL "${pid}" 2> /dev/null || true
    wait_exit "${pid}" 10 || die "the Temporal server (pid ${pid}) survived SIGKILL"
  fi
}

# The message of the server's last fatal log line, the reason it exited at start.
server_fatal_error() {
  grep '"level":"fatal"' "${state}/logs/temporal-server.log" | tail -1 | sed -E 's/.*"msg":"([^"]*)","error":"(([^"\\]|\\.)*)".*/\1: \2/' || echo "no fatal line in the log"
}

start_server() {
  if server_running; then return; fi
  write_server_config
  log "starting Temporal server ${version} on ${address} (log: ${state}/logs/temporal-server.log)"
  nohup "${bin_dir}/temporal-server" --config-file "${state}/config/server.yaml" --allow-no-auth start \
    >> "${state}/logs/temporal-server.log" 2>&1 < /dev/null &
  echo $! > "${state}/temporal-server.pid"
  for _ in $(seq 1 240); do
    if temporal_cli operator cluster health --address "${address}" 2> /dev/null | grep -q SERVING; then return; fi
    server_running || die "the Temporal server exited: $(server_fatal_error) (log: ${state}/logs/temporal-server.log)"
    sleep 0.5
  done
  die "the Temporal server did not become healthy within 120 s; see ${state}/logs/temporal-server.log"
}

# A plain server has no namespace: create `default` and register the search attributes.
setup_namespace() {
  # A server just started may not answer for its namespaces yet (describe fails, create then says
  # the namespace exists): ask until describe succeeds, creating the namespace where it is missing.
  local created="" output
  for _ in $(seq 1 120); do
    if temporal_cli operator namespace describe --namespace default --address "${address}" > /dev/null 2>&1; then break; fi
    if [ -z "${created}" ]; then
      if output="$(temporal_cli operator namespace create --namespace default --retention 72h --address "${address}" 2>&1)"; then
        log "created namespace default"
        created=1
      elif grep -q "already exists" <<< "${output}"; then
        created=1
      fi
    fi
    sleep 0.5
  done
  temporal_cli operator namespace describe --namespace default --address "${address}" > /dev/null 2>&1 \
    || die "namespace default was not usable within 60 s (temporal operator namespace describe fails); see ${state}/logs/temporal-server.log"
  local existing name type
  # A namespace just created reaches the front end's namespace cache some seconds later; until
  # then listing or creating its search attributes fails with "Namespace default is not found".
  for _ in $(seq 1 120); do
    if existing="$(temporal_cli operator search-attribute list --namespace default --address "${address}" 2> /dev/null)"; then break; fi
    existing=""
    sleep 0.5
  done
  [ -n "${existing}" ] || die "namespace default was not usable within 60 s of its creation (temporal operator search-attribute list fails); see ${state}/logs/temporal-server.log"
  for pair in TimeshareRunId:Keyword TimeshareStrategy:Keyword TimeshareIteration:Int TimesharePhase:Keyword; do
    name="${pair%%:*}"
    type="${pair##*:}"
    if ! grep -q "\b${name}\b" <<< "${existing}"; then
      temporal_cli operator search-attribute create --namespace default --name "${name}" --type "${type}" --address "${address}" > /dev/null
    fi
  done
}

up() {
  mkdir -p "${state}/logs"
  build_server
  start_postgres
  setup_schema
  start_server
  setup_namespace
  log "ready: Temporal at ${address} (namespace default), PostgreSQL at 127.0.0.1:${pg_port}, state in ${state}"
}

down() {
  if server_running; then
    stop_server
    log "stopped the Temporal server"
  fi
  rm -f "${state}/temporal-server.pid"
  if pg_running; then
    as_pg_user "$(pg_bin)/pg_ctl" -D "${pg_data}" -m fast -w stop > /dev/null
    log "stopped PostgreSQL"
  fi
}

status() {
  if server_running; then echo "temporal-server: running (pid $(cat "${state}/temporal-server.pid"), ${address})"; else echo "temporal-server: stopped"; fi
  if pg_running; then echo "postgresql: running (pid $(head -1 "${pg_data}/postmaster.pid"), 127.0.0.1:${pg_port})"; else echo "postgresql: stopped"; fi
}

# The README's cluster path against this server: one orchestrator and one gpu-node worker per
# node, `timeshare start --watch`; the workers stop when the run ends. The workers' local state
# (simulated engines, per run id) lives with this server's data: a fresh cluster folder must not
# meet the engine state of an earlier server's run of the same id.
run_config() {
  local config="$1" nodes pids=() code=0 flags=(--address "${address}" --state-dir "${state}/workers")
  [[ -f "${config}" ]] || die "no config file ${config}"
  nodes="$("${root}/bin/timeshare" check-config "${config}" | head -1 | sed -E 's/.*, ([0-9]+)×[0-9]+ GPUs$/\1/')"
  [[ "${nodes}" =~ ^[0-9]+$ ]] || die "could not read the node count of ${config} from check-config"
  "${root}/bin/timeshare" worker orchestrator "${config}" "${flags[@]}" >> "${state}/logs/orchestrator.log" 2>&1 &
  pids+=($!)
  for node in $(seq 0 $((nodes - 1))); do
    "${root}/bin/timeshare" worker gpu-node "${config}" --node "${node}" "${flags[@]}" >> "${state}/logs/gpu-node-${node}.log" 2>&1 &
    pids+=($!)
  done
  "${root}/bin/timeshare" start "${config}" --address "${address}" --watch || code=$?
  kill "${pids[@]}" 2> /dev/null || true
  wait "${pids[@]}" 2> /dev/null || true
  return "${code}"
}

# Sourced (tests of single steps): define the functions only.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  run)
    [[ $# -ge 2 ]] || die "usage: cluster.sh run <config>"
    up
    run_config "$2"
    ;;
  *)
    echo "usage: cluster.sh up | run <config> | down | status" >&2
    exit 2
    ;;
esac
