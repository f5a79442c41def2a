#!/usr/bin/env bash
# Creates the Python venv of the reference engine and the OpenEnv test environment (.cache/pyenv)
# and installs their pinned requirements when missing or changed. Cheap when done.
#
# Two stacks, chosen by TIMESHARE_PYTHON_STACK:
#   light (default): CPU-only. torch is Debian's python3-torch (1.13, bookworm), installed with
#     apt-get when missing (as root); the venv is made by Debian's /usr/bin/python3 with
#     --system-site-packages, so it sees that torch, and pip installs the rest
#     (engines/reference/requirements.txt, engines/openenv-env/requirements.txt, under
#     engines/reference/constraints-light.txt). Sizes and times: README.md.
#   gpu: PyPI's torch (engines/reference/requirements-gpu.txt; on Linux with its CUDA libraries,
#     about 5.8 GB) in a plain venv of python3 (TIMESHARE_BOOTSTRAP_PYTHON overrides the
#     interpreter in both stacks).
# A change of stack, interpreter or pinned file rebuilds the venv (the stamp records them).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

stack="${TIMESHARE_PYTHON_STACK:-light}"
venv=.cache/pyenv
stamp="${venv}/.timeshare-stack"
common=(engines/reference/requirements.txt engines/openenv-env/requirements.txt)
case "${stack}" in
  light)
    python="${TIMESHARE_BOOTSTRAP_PYTHON:-/usr/bin/python3}"
    pins=("${common[@]}" engines/reference/constraints-light.txt)
    pip_args=(-r "${common[0]}" -r "${common[1]}" -c engines/reference/constraints-light.txt)
    venv_args=(--system-site-packages)
    ;;
  gpu)
    python="${TIMESHARE_BOOTSTRAP_PYTHON:-python3}"
    pins=("${common[@]}" engines/reference/requirements-gpu.txt)
    pip_args=(-r "${common[0]}" -r "${common[1]}" -r engines/reference/requirements-gpu.txt)
    venv_args=()
    ;;
  *)
    echo "ensure-python: TIMESHARE_PYTHON_STACK must be light (CPU-only, Debian's torch; the default) or gpu (PyPI's torch with CUDA), got '${stack}'" >&2
    exit 1
    ;;
esac

if ! command -v "${python}" >/dev/null; then
  echo "ensure-python: ${python} not found; the ${stack} stack needs it (Python >= 3.10)" >&2
  exit 1
fi
identity="stack=${stack} python=$(command -v "${python}")"
want="${identity} pins=$(cat "${pins[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -x "${venv}/bin/python" && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
  exit 0
fi

if ! "${python}" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "ensure-python: Python >= 3.10 is required, found $("${python}" --version 2>&1) at ${python}" >&2
  exit 1
fi

# Debian's torch and venv module, installed the way ensure-deps installs chromium.
ensure_debian_torch() {
  if "${python}" -c 'import torch, ensurepip' 2>/dev/null; then
    return
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null && [[ "${python}" == /usr/bin/* ]]; then
    echo "ensure-python: installing Debian's python3-torch (CPU-only) and python3-venv (apt-get)" >&2
    local started="${SECONDS}"
    # dpkg's lines for 170-odd packages go to a log, printed only if the install fails.
    local log
    log="$(mktemp)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-torch python3-venv; } >"${log}" 2>&1; then
      cat "${log}" >&2
      rm -f "${log}"
      echo "ensure-python: apt-get install of python3-torch python3-venv failed (output above)" >&2
      exit 1
    fi
    rm -f "${log}"
    "${python}" -c 'import torch, ensurepip'
    echo "ensure-python: Debian packages installed in $((SECONDS - started)) s" >&2
    return
  fi
  echo "ensure-python: the light Python stack needs torch importable by ${python} (Debian bookworm: apt-get install --no-install-recommends python3-torch python3-venv, as root). Alternatively TIMESHARE_PYTHON_STACK=gpu installs PyPI's torch with its CUDA libraries (about 5.8 GB)." >&2
  exit 1
}

if [[ "${stack}" == light ]]; then
  ensure_debian_torch
fi
echo "ensure-python: installing the ${stack} stack (reference engine, OpenEnv environment) into ${venv}" >&2
venv_started="${SECONDS}"
# A venv of another stack or interpreter is rebuilt from scratch; a change of pins installs over it.
if [[ ! -f "${stamp}" || "$(cut -d' ' -f1-2 "${stamp}")" != "${identity}" ]]; then
  rm -rf "${venv}"
fi
"${python}" -m venv "${venv_args[@]}" "${venv}"
"${venv}/bin/pip" install --disable-pip-version-check --quiet "${pip_args[@]}" >&2

# Postcondition: every module the engines and their tests import loads, and torch sees NumPy
# (a NumPy 2 beside torch 1.13 breaks torch.from_numpy); the light stack's torch is Debian's.
"${venv}/bin/python" - "${stack}" <<'PY'
import sys

import numpy, openenv, pytest, safetensors, torch, uvicorn  # noqa: F401

torch.from_numpy(numpy.zeros(1))
if sys.argv[1] == "light" and torch.__file__.startswith(sys.prefix):
    sys.exit(f"ensure-python: the light stack's torch must be Debian's, found {torch.__version__} in the venv at {torch.__file__}")
print(f"ensure-python: torch {torch.__version__} ({torch.__file__}), numpy {numpy.__version__}", file=sys.stderr)
PY
echo "ensure-python: venv built in $((SECONDS - venv_started)) s" >&2
echo "${want}" > "${stamp}"
