#!/usr/bin/env bash
# Stress test of the distributed deployment (not part of every CI run): plays the governance
# story with a live reorg on two govflow instances sharing nats-server and one Cassandra node
# (8 partitions, 6-second leases, as deploy/nats), SIGKILLs the instance holding the indexer
# role mid-story and restarts it, and compares both instances with the chain and with an
# embedded backfill (tests/governance_e2e.rs: two_instances_nats_cql_reorg_and_leader_kill).
# The kill moves through every step of the story in turn (GOVFLOW_STRESS_KILL_AT=1..4).
#
#   scripts/stress-cluster.sh [RUNS] [TEST]    RUNS defaults to 10; stops at the first failure
#                                              (its output is kept in target/stress-cluster/)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
test=${2:-two_instances_nats_cql_reorg_and_leader_kill}
scripts/setup.sh >/dev/null
cql_started=0
if [ -z "${GOVFLOW_TEST_CQL:-}" ]; then
  if ! scripts/cassandra.sh status >/dev/null 2>&1; then cql_started=1; fi
  scripts/cassandra.sh start >/dev/null
  export GOVFLOW_TEST_CQL="127.0.0.1:${GOVFLOW_CQL_PORT:-9042}"
fi
trap '[ "$cql_started" = 1 ] && scripts/cassandra.sh stop >/dev/null || true' EXIT
cargo test --locked --test governance_e2e --no-run --quiet
out=target/stress-cluster
mkdir -p "$out"
passed=0
for i in $(seq 1 "$runs"); do
  step=$(( (i - 1) % 4 + 1 ))
  start=$(date +%s)
  if GOVFLOW_STRESS_KILL_AT=$step cargo test --locked --quiet --test governance_e2e "$test" -- --exact --nocapture >"$out/run-$i.log" 2>&1; then
    passed=$((passed + 1))
    echo "run $i/$runs (leader killed at step $step): ok in $(( $(date +%s) - start )) s — $(grep -o 'cluster story: .*' "$out/run-$i.log" | head -n 1)"
  else
    echo "run $i/$runs (leader killed at step $step): FAILED in $(( $(date +%s) - start )) s; output in $out/run-$i.log"
    echo "stress-cluster: $passed of $runs runs passed"
    exit 1
  fi
done
echo "stress-cluster: $passed of $runs runs passed, in a row"
