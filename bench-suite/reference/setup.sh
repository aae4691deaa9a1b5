#!/usr/bin/env bash
# Create (or reuse) the Python environment for the reference implementations.
#
# Makes .venv at the repository root with the machine's python3 (3.11 or
# newer), installs the exact versions in requirements.txt from PyPI, and
# prints the path of the environment's python. When every pin is already
# installed it changes nothing and needs no network.
#
# Usage: bench-suite/reference/setup.sh   (from any directory)
# Set PYTHON to use another interpreter than python3.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"
requirements="$script_dir/requirements.txt"
venv="$repo_root/.venv"
python_bin="${PYTHON:-python3}"

if ! command -v "$python_bin" >/dev/null 2>&1; then
    echo "error: $python_bin not found; install Python 3.11 or newer, or set PYTHON to its path" >&2
    exit 1
fi
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    version="$("$python_bin" -c 'import platform; print(platform.python_version())')"
    echo "error: $python_bin is Python $version, but numpy 2.3 needs 3.11 or newer; set PYTHON to a newer interpreter" >&2
    exit 1
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv" >&2
    "$python_bin" -m venv "$venv"
fi

# Prints the pins whose installed version differs, one per line.
missing_pins() {
    "$venv/bin/python" - "$requirements" <<'PY'
import sys
from importlib import metadata

for line in open(sys.argv[1], encoding="utf-8"):
    pin = line.split("#", 1)[0].strip()
    if not pin:
        continue
    name, version = pin.split("==")
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        installed = None
    if installed != version:
        print(pin)
PY
}

if [[ -n "$(missing_pins)" ]]; then
    echo "installing into $venv:" $(missing_pins) >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
    still_missing="$(missing_pins)"
    if [[ -n "$still_missing" ]]; then
        echo "error: pip finished but these pins are still not installed: $still_missing" >&2
        exit 1
    fi
else
    echo "reusing $venv: every pin in $requirements is installed" >&2
fi

echo "$venv/bin/python"
