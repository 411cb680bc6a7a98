#!/usr/bin/env bash
# Installs the package with its test extras at the tested versions, then runs
# the linters (code style; the package's import layers), the unit and recipe
# tests, and every doctest.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --quiet --disable-pip-version-check -e ".[test]" -c constraints.txt
python -m ruff check .
python -m ruff format --check .
lint-imports
python -m pytest "$@"
