#!/usr/bin/env bash
# Install Label Studio into its own virtual environment (it pins many packages, so it must
# not share the project's venv), from the versions in .ci/label_studio.constraints.txt.
# The venv records the hash of that file; when the file changes the venv is built anew, so a
# machine that kept an old venv runs what a fresh machine runs. Used by the live test
# tests/test_label_studio_live.py, which looks for $PANELBEATER_LS_VENV/bin/label-studio.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PANELBEATER_LS_VENV:-/opt/panelbeater-ls-venv}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS=.ci/label_studio.constraints.txt
STAMP="$VENV/.constraints.sha256"
WANT="$(sha256sum "$CONSTRAINTS" | cut -d' ' -f1)"

if [ -x "$VENV/bin/label-studio" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] \
    && "$VENV/bin/python" -c "import label_studio" 2>/dev/null; then
    echo "label-studio already installed in $VENV from $CONSTRAINTS"
    exit 0
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
LS_VERSION="$(grep -E '^label-studio==' "$CONSTRAINTS")"
# Packages come from the registry only (PIP_FIND_LINKS cleared), as for the project's venv.
PIP_FIND_LINKS= "$VENV/bin/pip" install --quiet --upgrade pip
PIP_FIND_LINKS= "$VENV/bin/pip" install --quiet -c "$CONSTRAINTS" "$LS_VERSION" 2> >(grep -v "^WARNING: Location" >&2)
echo "$WANT" >"$STAMP"
"$VENV/bin/label-studio" --version 2>/dev/null | head -n 3 || true
echo "$LS_VERSION installed in $VENV"
