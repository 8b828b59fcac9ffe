#!/usr/bin/env bash
# Installs what govflow's demo, tests and benchmarks need, idempotently:
# the npm packages (anvil, the Solidity compiler, OpenZeppelin contracts) into node_modules/.
# Rust, Node.js and npm come with the machine.
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
