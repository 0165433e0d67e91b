#!/usr/bin/env bash
# Download, here, the wheels a GPU box needs for bench/gpu_check.sh (it cannot reach PyPI): the
# transformers version this project runs, and the regex it asks for. They land in .whl/ (ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "transformers==$(version transformers)" "regex==$(version regex)"
ls -l .whl
