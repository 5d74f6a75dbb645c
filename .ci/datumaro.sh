#!/usr/bin/env bash
# Install datumaro (CVAT's own dataset library, the judge of our CVAT XML) into its own virtual
# environment, from the versions in .ci/datumaro.constraints.txt: it brings
# opencv-python-headless, which must not sit beside the project's opencv-python. The venv
# records the hash of that file and is built anew when the file changes. Used by
# tests/test_formats_cvat.py, which appends $PANELBEATER_DATUMARO_VENV's site-packages after
# the project's own.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PANELBEATER_DATUMARO_VENV:-/opt/panelbeater-datumaro-venv}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS=.ci/datumaro.constraints.txt
STAMP="$VENV/.constraints.sha256"
WANT="$(sha256sum "$CONSTRAINTS" | cut -d' ' -f1)"

if [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] && "$VENV/bin/python" -c "import datumaro" 2>/dev/null; then
    echo "datumaro already installed in $VENV from $CONSTRAINTS"
    exit 0
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
DM_VERSION="$(grep -E '^datumaro==' "$CONSTRAINTS")"
"$VENV/bin/pip" install --quiet -c "$CONSTRAINTS" "$DM_VERSION" 2> >(grep -v "^WARNING: Location" >&2)
echo "$WANT" >"$STAMP"
echo "$DM_VERSION installed in $VENV"
