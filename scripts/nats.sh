#!/usr/bin/env bash
# nats-server (NATS with JetStream) for govflow's tests and scripts, built from source with
# `go install` through the Go module proxy into <repo>/.tools/bin.
#
#   scripts/nats.sh install   go install nats-server v2.15.2 into .tools/bin; a no-op when
#                             `.tools/bin/nats-server --version` already reports that version
#   scripts/nats.sh path      prints the absolute path of the binary (installed or not)
#
# Why a Go-built current release rather than Debian's nats-server package (2.9.x): the 2.9
# series is end-of-life, and the JetStream behaviour govflow relies on or may test came later:
# subject transforms and multi-filter consumers (2.10), per-message TTL and consumer pause
# (2.11), and the fixes to Nats-Msg-Id de-duplication and publish-ack semantics made since 2.10.
# Pinning one release also makes the tests see the same server everywhere.
#
# Settings (environment):
#   GOVFLOW_GO   the go command to use (default: go on PATH, else /usr/local/go/bin/go)
#
# Needs Go 1.26 or newer (the release's go.mod says `go 1.26.0`) and the Go module proxy on the
# first install (~50 s: module downloads plus the build); the build and module caches are Go's
# defaults. Runs from any directory.
set -euo pipefail

die() { echo "nats.sh: $*" >&2; exit 1; }
say() { echo "nats.sh: $*"; }

NATS_VERSION=v2.15.2
NATS_MODULE=github.com/nats-io/nats-server/v2

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BIN_DIR="$REPO/.tools/bin"
BIN="$BIN_DIR/nats-server"

find_go() {
  if [ -n "${GOVFLOW_GO:-}" ]; then
    [ -x "$GOVFLOW_GO" ] || command -v "$GOVFLOW_GO" >/dev/null 2>&1 || die "GOVFLOW_GO=$GOVFLOW_GO is not executable"
    GO=$GOVFLOW_GO
  elif command -v go >/dev/null 2>&1; then
    GO=$(command -v go)
  elif [ -x /usr/local/go/bin/go ]; then
    GO=/usr/local/go/bin/go
  else
    die "Go not found (install it from go.dev/dl, or set GOVFLOW_GO)"
  fi
}

# The version the installed binary reports ("nats-server: v2.15.2" -> "v2.15.2"), or nothing.
installed_version() {
  [ -x "$BIN" ] || return 0
  "$BIN" --version 2>/dev/null | awk '{print $NF}' | head -n1 || true
}

do_install() {
  if [ "$(installed_version)" = "$NATS_VERSION" ]; then
    say "nats-server $NATS_VERSION already installed at $BIN"
    return 0
  fi
  find_go
  mkdir -p "$BIN_DIR"
  local t0=$SECONDS
  say "installing nats-server $NATS_VERSION into $BIN_DIR (go install $NATS_MODULE@$NATS_VERSION)"
  GOBIN="$BIN_DIR" "$GO" install "$NATS_MODULE@$NATS_VERSION" </dev/null ||
    die "go install $NATS_MODULE@$NATS_VERSION failed (see above)"
  local got
  got=$(installed_version)
  [ "$got" = "$NATS_VERSION" ] || die "installed $BIN reports '${got:-nothing}', expected $NATS_VERSION"
  say "installed nats-server $NATS_VERSION in $((SECONDS - t0)) s"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  install) do_install ;;
  path) echo "$BIN" ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
