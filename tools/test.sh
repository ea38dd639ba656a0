#!/usr/bin/env bash
# Installs what is missing, builds, and runs every spec (extra arguments go to busted).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh test
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 >/dev/null
# /usr/bin/busted starts whatever `lua` is first on PATH (5.1 on Debian): name 5.4.
exec lua5.4 /usr/bin/busted "$@"
