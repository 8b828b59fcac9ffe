#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks the contract artifacts against their
# sources, starts a CQL engine (Apache Cassandra 5 from Maven Central, for the ScyllaDB store),
# then runs every Rust test (unit, store conformance on both backends, anvil end-to-end, crash)
# and stops the engine it started.
#
#   GOVFLOW_TEST_CQL=host:port   use that CQL engine instead of starting one
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
echo "== format (cargo fmt --check)"
cargo fmt --check
echo "== lint (cargo clippy --all-targets -- -D warnings)"
cargo clippy --locked --all-targets --quiet -- -D warnings
echo "== contracts: artifacts match the Solidity sources"
node scripts/compile-contracts.js --check
log=$(mktemp)
cql_started=0
cleanup() {
  rm -f "$log"
  if [ "$cql_started" = 1 ]; then scripts/cassandra.sh stop || true; fi
}
trap cleanup EXIT
if [ -z "${GOVFLOW_TEST_CQL:-}" ]; then
  echo "== CQL engine for the ScyllaDB store tests (scripts/cassandra.sh)"
  if ! scripts/cassandra.sh status >/dev/null 2>&1; then cql_started=1; fi
  scripts/cassandra.sh start
  export GOVFLOW_TEST_CQL="127.0.0.1:${GOVFLOW_CQL_PORT:-9042}"
fi
echo "== cargo test (unit, store conformance, anvil end-to-end, crash)"
set +e
cargo test --locked --lib --bins --tests -- --test-threads "${GOVFLOW_TEST_THREADS:-2}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
sum() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{s+=$1} END {print s+0}'; }
echo
echo "govflow: $(sum passed) passed, $(sum failed) failed"
exit "$status"
