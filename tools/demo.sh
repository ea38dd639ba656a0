#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the phishing-triage
# playbook (examples/triage.lua). Without VT_API_KEY it starts the bundled fake
# VirusTotal on loopback and stops it afterwards; with VT_API_KEY it asks the
# real service.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh test
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 >/dev/null

if [ -z "${VT_API_KEY:-}" ]; then
  coproc FAKE { exec python3 spec/fake/fakevt.py --key demo-key --analysis-steps 1; }
  read -r word port _storage pid <&"${FAKE[0]}"
  [ "$word" = LISTENING ] || { echo "the fake VirusTotal did not start" >&2; exit 1; }
  trap 'kill "$pid" 2>/dev/null || true' EXIT
  export VT_API_KEY=demo-key VT_BASE_URL="http://127.0.0.1:$port"
  echo "(no VT_API_KEY: using the bundled fake VirusTotal at $VT_BASE_URL)"
fi
lua5.4 examples/triage.lua "$@"
