#!/usr/bin/env bash
# Install the offline data sources that come from Debian's packages (idempotent, quick when present).
set -euo pipefail
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'" >&2
    fi
fi
