#!/usr/bin/env bash
# Installs what govflow needs for one purpose, idempotently:
#
#   scripts/setup.sh demo    the npm packages (anvil, the Solidity compiler, OpenZeppelin
#                            contracts) into node_modules/: all the demo needs
#   scripts/setup.sh test    the demo's, plus rustfmt and clippy, Debian's redis-server (cache
#                            tests), schemathesis (API fuzzing against the OpenAPI document) into
#                            .venv/schemathesis from PyPI, and nats-server (JetStream) into
#                            .tools/bin, built by `go install` through the Go module proxy
#                            (scripts/nats.sh; needs Go 1.26)
#   scripts/setup.sh bench   the tests', plus Debian's wrk (HTTP load benchmark)
#
# With no argument: test. Rust, Node.js, npm and Python 3 come with the machine. Java 17 and
# Maven (the CQL engine of the tests) are used by scripts/cassandra.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-test}
case "$mode" in
  demo | test | bench) ;;
  *) echo "setup: unknown mode '$mode' (expected demo, test or bench)" >&2; exit 2 ;;
esac

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
[ "$mode" = demo ] && exit 0

# The formatter and the linter (the test command checks both).
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  need rustup "install Rust from rustup.rs (rustfmt and clippy come as rustup components)"
  echo "setup: installing rustfmt and clippy (rustup)"
  rustup component add rustfmt clippy
fi

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
redis-server --version | head -n 1
if [ "$mode" = bench ]; then
  apt_need wrk wrk
  wrk --version 2>&1 | head -n 1 || true
fi

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
