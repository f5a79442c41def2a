#!/usr/bin/env bash
# Measures the Python install `npm test` makes and prints its figures (README.md, Quick start):
# deletes .cache/pyenv and rebuilds it with scripts/ensure-python.sh, pip's cache empty (every
# wheel is downloaded). For the light stack (TIMESHARE_PYTHON_STACK, default light), when Debian's
# python3-torch is not installed yet, it first prints what apt-get will add (packages, download,
# installed size); ensure-python then installs them, timed. On a machine where it is installed
# already, only the venv is measured.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

stack="${TIMESHARE_PYTHON_STACK:-light}"
echo "stack: ${stack}"
if [[ "${stack}" == light ]] && command -v apt-get >/dev/null; then
  if dpkg-query -W -f='${Status}' python3-torch 2>/dev/null | grep -q 'install ok installed'; then
    echo "Debian packages: python3-torch $(dpkg-query -W -f='${Version}' python3-torch) already installed (not measured)"
  else
    apt-get update -qq
    packages="$(apt-get install -s --no-install-recommends python3-torch python3-venv | awk '/^Inst /{print $2}')"
    # shellcheck disable=SC2086 # one package name per word
    apt-cache show --no-all-versions ${packages} | awk -v n="$(wc -w <<<"${packages}")" '
      /^Installed-Size:/ { installed += $2 } /^Size:/ { download += $2 }
      END { printf "Debian packages to install: %d, download %.0f MiB, installed %.0f MiB\n", n, download / 1048576, installed / 1024 }'
  fi
fi

pip_cache="$(mktemp -d)"
trap 'rm -rf "${pip_cache}"' EXIT
rm -rf .cache/pyenv
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date +%s.%N)"
PIP_CACHE_DIR="${pip_cache}" bash scripts/ensure-python.sh
finished="$(date +%s.%N)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v s="${started}" -v f="${finished}" 'BEGIN { printf "install from scratch: %.0f s\n", f - s }'
echo "venv .cache/pyenv: $(du -sh .cache/pyenv | cut -f1)"
