#!/usr/bin/env bash
# The demo: a local chain, the CultureBridge contracts deployed, a governance story played,
# govflow indexing it and serving the API on http://127.0.0.1:8080 until Ctrl-C
# (`govflow demo --help` for the flags, e.g. `scripts/demo.sh --listen 127.0.0.1:9090`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
exec cargo run --locked --release --quiet -- demo "$@"
