#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks the contract artifacts against their
# sources, then runs every Rust test (unit, store conformance, anvil end-to-end, crash).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== contracts: artifacts match the Solidity sources"
node scripts/compile-contracts.js --check
echo "== benches compile"
cargo build --locked --benches --quiet
echo "== cargo test (unit, store conformance, anvil end-to-end, crash)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --lib --bins --tests -- --test-threads "${GOVFLOW_TEST_THREADS:-2}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
sum() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{s+=$1} END {print s+0}'; }
echo
echo "govflow: $(sum passed) passed, $(sum failed) failed"
exit "$status"
