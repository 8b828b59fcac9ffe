#!/usr/bin/env bash
# Installs what govflow's demo, tests and benchmarks need, idempotently:
# - the npm packages (anvil, the Solidity compiler, OpenZeppelin contracts) into node_modules/;
# - Debian's redis-server (cache tests) and wrk (load benchmark), with apt-get when missing;
# - schemathesis (API fuzzing against the OpenAPI document) into .venv/schemathesis from PyPI;
# - nats-server (JetStream, for the NATS tests) into .tools/bin, built by `go install` through
#   the Go module proxy (scripts/nats.sh; needs Go 1.26).
# Rust, Node.js, npm and Python 3 come with the machine. Java 17 and Maven (the CQL engine of
# the tests) are used by scripts/cassandra.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required but not installed ($2)" >&2; exit 1; }; }
need cargo "install Rust from rustup.rs"
need node "install Node.js 18 or newer"
need npm "install npm"

anvil=node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
stamp=node_modules/.govflow-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -x "$anvil" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing npm packages (anvil, solc, @openzeppelin/contracts)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
"$anvil" --version | head -n 1
node -e 'console.log("solc " + require("solc").version())'

# Debian packages: apt-get update once, then install what is missing.
apt_updated=0
apt_need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if [ "$apt_updated" = 0 ]; then
    echo "setup: apt-get update"
    $sudo apt-get update -qq
    apt_updated=1
  fi
  echo "setup: installing $2 (apt)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
}
apt_need redis-server redis-server
apt_need wrk wrk
redis-server --version | head -n 1

# schemathesis, pinned, in its own virtual environment.
SCHEMATHESIS_VERSION=4.32.5
venv=.venv/schemathesis
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  echo "setup: installing schemathesis $SCHEMATHESIS_VERSION (PyPI)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$venv/bin/schemathesis" --version

# nats-server, pinned, built from the Go module proxy (see scripts/nats.sh for why not Debian's).
scripts/nats.sh install
"$(scripts/nats.sh path)" --version
