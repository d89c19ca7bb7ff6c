#!/usr/bin/env bash
# Sourced by test.sh: a Python environment with the independent checkers of
# tests/python/requirements.txt, made once (again when the list changes). Exports
# CITYHUB_TEST_PYTHON, the interpreter the tests run those checkers with.
set -euo pipefail

python3 -c 'import venv, ensurepip' 2>/dev/null || {
  echo "Installing Python's venv..."
  apt_install python3-venv
}
venv_dir="target/python"
stamp="$venv_dir/.requirements"
if ! cmp -s tests/python/requirements.txt "$stamp" 2>/dev/null; then
  echo "Preparing the Python checkers (tests/python/requirements.txt)..."
  rm -rf "$venv_dir"
  python3 -m venv "$venv_dir"
  "$venv_dir/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt "$stamp"
fi
export CITYHUB_TEST_PYTHON="$PWD/$venv_dir/bin/python"
