#!/usr/bin/env bash
# Creates the Python venv of the reference engine and the OpenEnv test environment (.cache/pyenv)
# and installs their pinned requirements (engines/reference/requirements.txt,
# engines/openenv-env/requirements.txt) when missing or changed. Cheap when done.
# The first install downloads torch (on Linux with its CUDA libraries, about 3 GB).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

requirements=(engines/reference/requirements.txt engines/openenv-env/requirements.txt)
venv=.cache/pyenv
stamp="${venv}/.requirements.sha256"
python="${TIMESHARE_BOOTSTRAP_PYTHON:-python3}"

if ! command -v "${python}" >/dev/null; then
  echo "ensure-python: ${python} not found; Python >= 3.10 is required for the reference engine" >&2
  exit 1
fi
if ! "${python}" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "ensure-python: Python >= 3.10 is required, found $("${python}" --version 2>&1)" >&2
  exit 1
fi

want="$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -x "${venv}/bin/python" && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
  exit 0
fi
echo "ensure-python: installing the reference engine's and the OpenEnv environment's requirements into ${venv} (torch is large: minutes on first run)" >&2
"${python}" -m venv "${venv}"
for file in "${requirements[@]}"; do
  "${venv}/bin/pip" install --disable-pip-version-check --quiet -r "${file}" >&2
done
echo "${want}" > "${stamp}"
