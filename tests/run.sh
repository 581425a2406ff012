#!/usr/bin/env bash
# The README's test command: sets up .venv with the test extras (PyTorch CPU is used only by
# tests, to write official-format checkpoints and run an independent reference), runs pytest.
# Extra arguments go to pytest.
STYLEKD_EXTRAS=test source "$(dirname "$0")/../launch/env.sh"
exec python -m pytest "$@"
