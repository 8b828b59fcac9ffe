#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks the contract artifacts against their
# sources, then runs every Rust test (unit, store conformance, anvil end-to-end, crash).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== contracts: artifacts match the Solidity sources"
node scripts/compile-contracts.js --check
echo "== benches and examples compile"
cargo build --locked --benches --examples --quiet
echo "== cargo test"
cargo test --locked -- --test-threads "${GOVFLOW_TEST_THREADS:-2}"
