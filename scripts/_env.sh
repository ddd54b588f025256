# Sourced by scripts/demo and scripts/test: a virtual environment in .venv with the pinned requirements,
# reinstalled only when a requirements file changes. Needs nothing but python3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQUIREMENTS="${1:-requirements.txt}"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "Creating the virtual environment in .venv ..."
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements.txt "$REQUIREMENTS" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing $REQUIREMENTS ..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>/dev/null || true
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import django" # fail here, not later, when the install did not work
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
unset VIRTUAL_ENV
