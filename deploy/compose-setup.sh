#!/bin/sh
# One-shot jobs of docker-compose.yml, run in the temporalio/admin-tools image (POSIX sh: the image
# has no bash). What a plain Temporal server needs once (deploy/README.md, "Any other cluster"):
#   compose-setup.sh schema      PostgreSQL databases and schemas (idempotent: update-schema
#                                applies only the versions a database lacks)
#   compose-setup.sh namespace   waits for the server, then the namespace (default: `default`)
#                                and the search attributes the workflows set (each created once)
# Environment: POSTGRES_SEEDS, DB_PORT, POSTGRES_USER, POSTGRES_PWD, TEMPORAL_SCHEMA_DIR (default
# /etc/temporal/schema, where the admin-tools image has them) for `schema`; TEMPORAL_ADDRESS,
# TEMPORAL_NAMESPACE for `namespace`. test/deploy/composeSetup.test.ts runs `namespace` against a real
# dev server; `schema` was run by hand against PostgreSQL (deploy/README.md).
set -eu

die() {
  echo "compose-setup: $*" >&2
  exit 1
}

schema() {
  : "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}" "${POSTGRES_USER:?POSTGRES_USER is required}" "${POSTGRES_PWD:?POSTGRES_PWD is required}"
  sql="temporal-sql-tool --plugin postgres12 --ep ${POSTGRES_SEEDS} -p ${DB_PORT:-5432} -u ${POSTGRES_USER} --pw ${POSTGRES_PWD}"
  for db in temporal temporal_visibility; do
    dir=temporal
    [ "${db}" = temporal_visibility ] && dir=visibility
    versioned="${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema}/postgresql/v12/${dir}/versioned"
    [ -d "${versioned}" ] || die "no schema files at ${versioned} (TEMPORAL_SCHEMA_DIR)"
    # Each step is idempotent (tried with temporal-sql-tool 1.32.0 against PostgreSQL 15): creating
    # a database that exists succeeds, setup-schema skips a schema past version 0.0, update-schema
    # applies only the versions the database lacks. A failure stops the job with the tool's error.
    ${sql} --db "${db}" create-database
    ${sql} --db "${db}" setup-schema -v 0.0
    ${sql} --db "${db}" update-schema -d "${versioned}"
    echo "schema of ${db} is current"
  done
}

# Retries `$@` every 2 s for up to 120 s: a server just started, or a namespace just created, is
# not ready at once (its front end's namespace cache catches up within seconds).
retry() {
  what="$1"
  shift
  tries=0
  until "$@" > /dev/null 2>&1; do
    tries=$((tries + 1))
    [ "${tries}" -ge 60 ] && die "${what}: still failing after 120 s: $("$@" 2>&1 | tail -n 3)"
    sleep 2
  done
}

# Registers search attribute $1 of type $2 in ${ns} unless it is there; succeeds once it is listed.
search_attribute() {
  if ! temporal operator search-attribute list --namespace "${ns}" --address "${address}" | grep -q "$1"; then
    temporal operator search-attribute create --namespace "${ns}" --name "$1" --type "$2" --address "${address}" || return 1
  fi
  temporal operator search-attribute list --namespace "${ns}" --address "${address}" | grep -q "$1"
}

namespace() {
  address="${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
  ns="${TEMPORAL_NAMESPACE:-default}"
  retry "server health at ${address}" temporal operator cluster health --address "${address}"
  if ! temporal operator namespace describe --namespace "${ns}" --address "${address}" > /dev/null 2>&1; then
    temporal operator namespace create --namespace "${ns}" --retention 72h --address "${address}" || echo "namespace ${ns}: created meanwhile"
  fi
  retry "namespace ${ns}" temporal operator namespace describe --namespace "${ns}" --address "${address}"
  # The typed search attributes of src/temporal/searchAttributes.ts (test/deploy/compose.test.ts
  # keeps them equal), each retried: a namespace just created is not found by these calls for a
  # few seconds after `describe` finds it (the front end's namespace cache).
  for attribute in TimeshareRunId=Keyword TimeshareStrategy=Keyword TimeshareIteration=Int TimesharePhase=Keyword; do
    retry "search attribute ${attribute} in ${ns}" search_attribute "${attribute%%=*}" "${attribute#*=}"
  done
  echo "namespace ${ns} and the search attributes are ready"
}

case "${1:-}" in
  schema) schema ;;
  namespace) namespace ;;
  *) die "usage: compose-setup.sh schema|namespace" ;;
esac
