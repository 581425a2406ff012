# Sourced by the README's commands: create .venv on first use and install the package
# (editable) with the extras named in $STYLEKD_EXTRAS (e.g. "test").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
extras="${STYLEKD_EXTRAS:-}"
.venv/bin/pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
export PATH="$PWD/.venv/bin:$PATH"
