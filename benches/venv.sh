#!/usr/bin/env bash
# Creates the benchmark suite's Python virtualenv and installs the Python
# frameworks it compares twill with and the tests' Python peers: Twisted,
# uvloop, aiohttp and websockets (asyncio is in the standard library).
#   bash benches/venv.sh        # prints the interpreter's path on stdout
# The venv is target/twisted-venv (under $CARGO_TARGET_DIR if set); the
# tests' Twisted peers use it too. Run again, it only installs what is
# missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${CARGO_TARGET_DIR:-target}/twisted-venv"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
for package in twisted uvloop aiohttp websockets; do
    if ! "$venv/bin/python" -c "import $package" 2>/dev/null; then
        echo "venv.sh: installing $package into $venv" >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$package" >&2
    fi
done
echo "$(cd "$venv" && pwd)/bin/python"
