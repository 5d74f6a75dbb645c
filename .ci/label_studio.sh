#!/usr/bin/env bash
# Install Label Studio into its own virtual environment (it pins many packages, so it must
# not share the project's venv). Reused when already present. Used by the live test
# tests/test_label_studio_live.py, which looks for $PANELBEATER_LS_VENV/bin/label-studio.
set -euo pipefail
VENV="${PANELBEATER_LS_VENV:-/opt/panelbeater-ls-venv}"
PYTHON="${PYTHON:-python3}"
if [ -x "$VENV/bin/label-studio" ] && "$VENV/bin/python" -c "import label_studio" 2>/dev/null; then
    echo "label-studio already installed in $VENV"
    exit 0
fi
"$PYTHON" -m venv "$VENV"
PIP_FIND_LINKS= "$VENV/bin/pip" install --quiet --upgrade pip
PIP_FIND_LINKS= "$VENV/bin/pip" install --quiet label-studio
"$VENV/bin/label-studio" --version 2>/dev/null | head -n 3 || true
echo "label-studio installed in $VENV"
