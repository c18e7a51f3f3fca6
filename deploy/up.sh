#!/usr/bin/env bash
# Run the master on one machine: installs uv when it is missing (from PyPI, into a private
# venv), then `uv run kontena-master up` with embedded defaults (SQLite in ./data, in-process
# queue, http://127.0.0.1:8080). Extra arguments go to `kontena-master up`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=tests/env/lib.sh
source tests/env/lib.sh # the same ensure_uv the test command uses
ensure_uv
exec uv run --frozen kontena-master up "$@"
