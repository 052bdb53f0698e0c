#!/usr/bin/env bash
# Install the Debian packages Amulet uses (idempotent: only what is missing, so a second run is instant).
#   dataset-fashion-mnist  the offline Fashion-MNIST source (docs/datasets.md)
#   chromium               headless browser for the report screenshot and dashboard end-to-end tests
#   chromium-driver        its driver
#   poppler-utils          pdftoppm, to render report PDFs in tests
#   libpango-1.0-0         WeasyPrint's text layout (PDF reports)
#   fonts-dejavu-core      fonts for PDF reports
#   docker-compose         only to validate docker-compose.yml (`docker-compose config`); no engine is needed
set -euo pipefail
wanted=(dataset-fashion-mnist chromium chromium-driver poppler-utils libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core docker-compose)
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "warning: cannot install ${missing[*]} (no apt-get); install them with your system's package manager" >&2
fi
