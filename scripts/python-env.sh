#!/usr/bin/env bash
# Creates <repo>/.venv with pika, for the Python helpers used by Warren's tests
# (they run .venv/bin/python). Idempotent: does nothing when pika is importable.
set -euo pipefail

PIKA_VERSION=1.3.2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="$venv/bin/python"

if [ ! -x "$py" ]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            echo "python-env: installing python3-venv" >&2
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
        else
            echo "python-env: python3 venv/ensurepip missing; run: sudo apt-get install -y python3-venv" >&2
            exit 1
        fi
    fi
    # A half-created venv (e.g. from before python3-venv was installed) lacks bin/python.
    rm -rf "$venv"
    python3 -m venv "$venv"
fi

if ! "$py" -c 'import pika' >/dev/null 2>&1; then
    "$py" -m pip install --quiet --disable-pip-version-check "pika==$PIKA_VERSION" >&2
fi

echo "$py"
