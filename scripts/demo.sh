#!/usr/bin/env bash
# The demo: a local chain, the governance contracts deployed, a governance story played,
# govflow indexing it and serving the API on http://127.0.0.1:8080 until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --locked --release --quiet --example demo
