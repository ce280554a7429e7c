#!/usr/bin/env bash
# Make the project's virtual environment with any Python >= 3.12 found on this machine.
set -euo pipefail
venv=${1:-.venv}
extras=${2:-inference,cluster,dev}

ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

find_python() {
  local c
  for c in ${PYTHON:-} python3.13 python3.12 python3; do
    if command -v "$c" >/dev/null 2>&1 && ok "$c"; then command -v "$c"; return; fi
  done
  for c in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    if [ -x "$c" ] && ok "$c"; then echo "$c"; return; fi
  done
  return 1
}

if [ ! -x "$venv/bin/python" ] || ! ok "$venv/bin/python"; then
  py=$(find_python) || { echo "ensflow needs Python >= 3.12 and found none (set PYTHON=/path/to/python3.12)" >&2; exit 1; }
  echo "ensflow: creating $venv with $py ($("$py" -V 2>&1))"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
echo "ensflow: installing the package and its dependencies into $venv (first time: a few minutes)"
"$venv/bin/python" -m pip install -q -e ".[$extras]"
# `snakemake --profile gpu` / `--profile kubernetes` look the name up in Snakemake's user config
# directory: link the repo's profiles there. A different profile of that name is kept (and named).
profiles_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/profiles"
echo "ensflow: installing the named profiles gpu and kubernetes"
"$venv/bin/ensflow" install-profiles --profiles-dir "$profiles_dir" \
  || echo "ensflow: the named profiles were not installed (above); --profile profiles/gpu still works" >&2
