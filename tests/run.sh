#!/usr/bin/env bash
# The README's test command: sets up .venv with the test extras (PyTorch CPU is used only by
# tests, to write official-format checkpoints and run an independent reference), runs pytest.
# Extra arguments go to pytest.
STYLEKD_EXTRAS=test source "$(dirname "$0")/../launch/env.sh"
# Tests marked `slow` (minutes-long end-to-end runs) are left out unless asked for: a later -m
# wins, so `bash tests/run.sh -m slow` runs just them and `bash tests/run.sh -m ""` everything.
exec python -m pytest -m "not slow" "$@"
