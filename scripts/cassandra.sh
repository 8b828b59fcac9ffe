#!/usr/bin/env bash
# A single-node Apache Cassandra 5.0 on 127.0.0.1 for tests: a real CQL engine (the same
# CQL as ScyllaDB, which cannot be installed here), installed through Maven alone.
#
#   scripts/cassandra.sh install   copy cassandra-all and its runtime jars (deploy/cassandra/pom.xml)
#                                  into $GOVFLOW_CASSANDRA_HOME/lib; a no-op when already there
#   scripts/cassandra.sh start     install if needed, write the config, start the node in the
#                                  background and wait until a CQL query answers; a no-op when running
#   scripts/cassandra.sh stop      SIGTERM (Cassandra drains and flushes), SIGKILL after a timeout
#   scripts/cassandra.sh status    prints running, starting or stopped (exit 0, 0, 3)
#   scripts/cassandra.sh wipe      stop, then remove the data and logs (keeps the jars)
#   scripts/cassandra.sh probe [QUERY]
#                                  run one CQL query over the native protocol (v4) with the
#                                  launcher's own client; prints the rows, tab-separated
#
# Settings (environment):
#   GOVFLOW_CASSANDRA_HOME          where jars, config, data and logs live (default: <repo>/.cassandra)
#   GOVFLOW_CQL_PORT                CQL native port (default 9042)
#   GOVFLOW_CASSANDRA_STORAGE_PORT  internode port (default 7000 + (CQL port - 9042))
#   GOVFLOW_CASSANDRA_HEAP_MIN/MAX  JVM heap (default 512m / 1g)
#   GOVFLOW_CASSANDRA_START_TIMEOUT seconds to wait for CQL (default 180)
#   GOVFLOW_CASSANDRA_STOP_TIMEOUT  seconds between SIGTERM and SIGKILL (default 60)
#   GOVFLOW_CASSANDRA_PAXOS         LWT implementation: v2 (default) or v1
#   GOVFLOW_CASSANDRA_JVM_OPTS      extra JVM options (word-split)
#   GOVFLOW_CASSANDRA_UNSAFE_SYSTEM=0  flush the schema tables after each schema change (slower
#                                   DDL; see the note on durability below)
#   GOVFLOW_CASSANDRA_MLOCK=1       as root, let Cassandra mlockall() its memory (RSS ~0.9 GB
#                                   instead of ~0.4 GB); by default root's CAP_IPC_LOCK is dropped
#   GOVFLOW_JAVA_HOME               a Java 17 to use (else JAVA_HOME, java on PATH, /usr/lib/jvm/*17*)
#
# Durability: the commit log is synced every 10 s (periodic, as ScyllaDB's default), so a
# SIGKILL of the node loses up to the last 10 s of writes and schema changes; `stop` (SIGTERM)
# drains and loses nothing.
#
# Needs Java 17 (a JDK: javac builds the readiness probe; with a JRE alone the probe falls back
# to the log line plus the open port), Maven 3 and bash. Reads no standard input; runs from any
# directory. Only this node's own process is ever signalled (its pid file, checked against the
# process's command line).
set -euo pipefail

die() { echo "cassandra.sh: $*" >&2; exit 1; }
say() { echo "cassandra.sh: $*"; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
POM="$REPO/deploy/cassandra/pom.xml"
[ -f "$POM" ] || die "missing $POM"

CASSANDRA_VERSION=$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$POM" | head -n1)
[ -n "$CASSANDRA_VERSION" ] || die "no <cassandra.version> in $POM"

HOME_DIR=${GOVFLOW_CASSANDRA_HOME:-$REPO/.cassandra}
HOME_DIR=$(realpath -m -- "$HOME_DIR")   # absolute, symlinks resolved, need not exist yet
LIB="$HOME_DIR/lib"
CONF="$HOME_DIR/conf"
DATA="$HOME_DIR/data"
LOGS="$HOME_DIR/logs"
PROBE_DIR="$HOME_DIR/probe"
PIDFILE="$HOME_DIR/cassandra.pid"
STAMP="$LIB/.govflow-installed"
HOME_MARK="$HOME_DIR/.govflow-cassandra-home"

is_port() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }
CQL_PORT=${GOVFLOW_CQL_PORT:-9042}
is_port "$CQL_PORT" || die "GOVFLOW_CQL_PORT='$CQL_PORT' is not a port number"
if [ -n "${GOVFLOW_CASSANDRA_STORAGE_PORT:-}" ]; then
  STORAGE_PORT=$GOVFLOW_CASSANDRA_STORAGE_PORT
else
  STORAGE_PORT=$((7000 + CQL_PORT - 9042))
  if [ "$STORAGE_PORT" -lt 1024 ] || [ "$STORAGE_PORT" -gt 65535 ] || [ "$STORAGE_PORT" -eq "$CQL_PORT" ]; then
    if [ "$CQL_PORT" -lt 65535 ]; then STORAGE_PORT=$((CQL_PORT + 1)); else STORAGE_PORT=$((CQL_PORT - 1)); fi
  fi
fi
is_port "$STORAGE_PORT" || die "GOVFLOW_CASSANDRA_STORAGE_PORT='$STORAGE_PORT' is not a port number"
[ "$STORAGE_PORT" -ne "$CQL_PORT" ] || die "the storage port and the CQL port are both $CQL_PORT"

HEAP_MIN=${GOVFLOW_CASSANDRA_HEAP_MIN:-512m}
HEAP_MAX=${GOVFLOW_CASSANDRA_HEAP_MAX:-1g}
START_TIMEOUT=${GOVFLOW_CASSANDRA_START_TIMEOUT:-180}
STOP_TIMEOUT=${GOVFLOW_CASSANDRA_STOP_TIMEOUT:-60}
PAXOS=${GOVFLOW_CASSANDRA_PAXOS:-v2}
[[ "$START_TIMEOUT" =~ ^[0-9]+$ ]] || die "GOVFLOW_CASSANDRA_START_TIMEOUT must be a number of seconds"
[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "GOVFLOW_CASSANDRA_STOP_TIMEOUT must be a number of seconds"
case "$PAXOS" in v1|v2) ;; *) die "GOVFLOW_CASSANDRA_PAXOS must be v1 or v2, not '$PAXOS'" ;; esac

# The marker that names this node's java process on its command line.
MARK="-Dgovflow.cassandra.home=$HOME_DIR"

# ---------------------------------------------------------------------------------------------
# helpers

ensure_home() {
  case "$HOME_DIR" in
    *[[:space:]\'\"\\%#?]*) die "GOVFLOW_CASSANDRA_HOME='$HOME_DIR' has a space or quote; use a plain path" ;;
  esac
  [ "$HOME_DIR" != / ] || die "GOVFLOW_CASSANDRA_HOME must not be /"
  mkdir -p "$HOME_DIR" || die "cannot create $HOME_DIR"
  [ -e "$HOME_MARK" ] || echo "home of the govflow test Cassandra (scripts/cassandra.sh)" > "$HOME_MARK"
}

# One launcher at a time per home (start, stop, install, wipe); status and probe don't lock.
lock() {
  ensure_home
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$HOME_DIR/.lock"
    flock -w "$((START_TIMEOUT + STOP_TIMEOUT + 600))" 9 || die "timed out waiting for another cassandra.sh on $HOME_DIR"
  fi
}

java_spec_version() {
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n1
}

# Sets JAVA (and JAVAC when a javac sits beside it) to a Java 17.
find_java() {
  local c v seen=""
  local -a cands=()
  if [ -n "${GOVFLOW_JAVA_HOME:-}" ]; then
    [ -x "$GOVFLOW_JAVA_HOME/bin/java" ] || die "GOVFLOW_JAVA_HOME=$GOVFLOW_JAVA_HOME has no bin/java"
    cands+=("$GOVFLOW_JAVA_HOME/bin/java")
  fi
  [ -n "${JAVA_HOME:-}" ] && cands+=("$JAVA_HOME/bin/java")
  c=$(command -v java 2>/dev/null || true); [ -n "$c" ] && cands+=("$c")
  for c in /usr/lib/jvm/*17*/bin/java; do [ -e "$c" ] && cands+=("$c"); done
  for c in "${cands[@]}"; do
    [ -x "$c" ] || { seen+=" $c (not executable)"; continue; }
    v=$(java_spec_version "$c")
    if [ "$v" = 17 ]; then
      JAVA=$(readlink -f "$c")
      JAVAC="$(dirname "$JAVA")/javac"; [ -x "$JAVAC" ] || JAVAC=""
      return 0
    fi
    seen+=" $c (Java ${v:-unknown})"
    [ -n "${GOVFLOW_JAVA_HOME:-}" ] && [ "$c" = "$GOVFLOW_JAVA_HOME/bin/java" ] &&
      die "GOVFLOW_JAVA_HOME=$GOVFLOW_JAVA_HOME is Java ${v:-unknown}; Cassandra $CASSANDRA_VERSION needs Java 17"
  done
  if [ -z "$seen" ]; then
    die "Java not found; Cassandra $CASSANDRA_VERSION needs Java 17 (Debian: apt-get install openjdk-17-jdk-headless)"
  fi
  die "Cassandra $CASSANDRA_VERSION needs Java 17; found only:$seen (set GOVFLOW_JAVA_HOME to a Java 17)"
}

port_open() { timeout 2 bash -c ": <>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# The pid of this home's node, if one runs: the pid file, checked against the command line
# (a reused pid is not ours); failing that, a java process carrying this home's marker.
node_pid() {
  local pid cmd p
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ]; then
      cmd=$(tr '\0' '\n' 2>/dev/null < "/proc/$pid/cmdline" || true)
      if grep -qxF -- "$MARK" <<<"$cmd"; then echo "$pid"; return 0; fi
    fi
  fi
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' '\n' 2>/dev/null < "$p/cmdline" || true)
    [ -n "$cmd" ] || continue
    if grep -qxF -- "$MARK" <<<"$cmd" && grep -qx 'org.apache.cassandra.service.CassandraDaemon' <<<"$cmd"; then
      echo "${p#/proc/}"; return 0
    fi
  done
  return 1
}

alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

show_logs() {
  local f
  for f in "$LOGS/system.log" "$LOGS/stdout.log"; do
    if [ -s "$f" ]; then
      echo "---- last lines of $f" >&2
      tail -n "${1:-40}" "$f" | cut -c1-400 >&2
    fi
  done
}

installed() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_text)" ] &&
    [ -f "$LIB/cassandra-all-$CASSANDRA_VERSION.jar" ] && compgen -G "$LIB/jamm-*.jar" >/dev/null
}
stamp_text() { echo "cassandra-all $CASSANDRA_VERSION pom-sha256 $(sha256sum "$POM" | cut -d' ' -f1)"; }

jamm_jar() {
  local j
  j=$(compgen -G "$LIB/jamm-*.jar" | sort | tail -n1)
  [ -n "$j" ] || die "no jamm jar in $LIB (run: $0 install)"
  echo "$j"
}

# ---------------------------------------------------------------------------------------------
# install

do_install() {
  if installed; then
    say "Cassandra $CASSANDRA_VERSION already installed in $LIB"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) not found (Debian: apt-get install maven)"
  find_java
  local tmp="$HOME_DIR/lib.partial" t0=$SECONDS
  rm -rf "$tmp"
  say "installing Cassandra $CASSANDRA_VERSION jars into $LIB (Maven, deploy/cassandra/pom.xml)"
  # Maven runs on the Java 17 found above; its local repository is Maven's default.
  if ! JAVA_HOME=$(dirname "$(dirname "$JAVA")") mvn -q -B -Dstyle.color=never -f "$POM" \
        dependency:copy-dependencies "-Dcassandra.lib.dir=$tmp" </dev/null 2>&1 |
        sed -u 's/\x1b\[[0-9;]*m//g'; then  # Debian's Maven 3.8 prints colour resets even with -B
    rm -rf "$tmp"
    die "Maven could not fetch cassandra-all $CASSANDRA_VERSION and its dependencies (see above)"
  fi
  [ -f "$tmp/cassandra-all-$CASSANDRA_VERSION.jar" ] || die "Maven ran but $tmp has no cassandra-all-$CASSANDRA_VERSION.jar"
  compgen -G "$tmp/jamm-*.jar" >/dev/null || die "Maven ran but $tmp has no jamm jar"
  stamp_text > "$tmp/.govflow-installed"
  rm -rf "$LIB"
  mv "$tmp" "$LIB"
  local jars=("$LIB"/*.jar)
  say "installed ${#jars[@]} jars ($(du -sh "$LIB" | cut -f1)) in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------------------------
# the readiness probe: a tiny CQL native-protocol (v4) client on plain sockets

write_probe_source() {
  mkdir -p "$PROBE_DIR"
  cat > "$PROBE_DIR/CqlProbe.java.new" <<'JAVA'
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

/**
 * Runs one CQL query over the native protocol, version 4, with nothing but a socket:
 * OPTIONS, STARTUP, QUERY (consistency ONE). Prints the rows tab-separated (or what the result
 * was) and exits 0; exits 2 when nothing listens, 3 on a server error, 1 on anything else.
 * Usage: java CqlProbe HOST PORT [QUERY]
 */
public final class CqlProbe {
    private static final int OP_ERROR = 0x00, OP_STARTUP = 0x01, OP_READY = 0x02,
            OP_AUTHENTICATE = 0x03, OP_OPTIONS = 0x05, OP_SUPPORTED = 0x06, OP_QUERY = 0x07,
            OP_RESULT = 0x08;

    private static final class ServerError extends Exception {
        ServerError(String m) { super(m); }
    }

    private static final class Frame {
        final int opcode;
        final ByteBuffer body;
        Frame(int opcode, ByteBuffer body) { this.opcode = opcode; this.body = body; }
    }

    public static void main(String[] args) {
        String host = args.length > 0 ? args[0] : "127.0.0.1";
        int port = args.length > 1 ? Integer.parseInt(args[1]) : 9042;
        String query = args.length > 2 ? args[2] : "SELECT release_version FROM system.local";
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(host, port), 3000);
            s.setSoTimeout(15000);
            s.setTcpNoDelay(true);
            DataOutputStream out = new DataOutputStream(s.getOutputStream());
            DataInputStream in = new DataInputStream(s.getInputStream());

            send(out, 1, OP_OPTIONS, new byte[0]);
            expect(read(in, 1), OP_SUPPORTED, "OPTIONS");

            ByteArrayOutputStream startup = new ByteArrayOutputStream();
            DataOutputStream b = new DataOutputStream(startup);
            b.writeShort(1);
            writeString(b, "CQL_VERSION");
            writeString(b, "3.0.0");
            send(out, 2, OP_STARTUP, startup.toByteArray());
            Frame ready = read(in, 2);
            if (ready.opcode == OP_AUTHENTICATE)
                throw new ServerError("the server asks for authentication (" + string(ready.body) + ")");
            expect(ready, OP_READY, "STARTUP");

            ByteArrayOutputStream q = new ByteArrayOutputStream();
            DataOutputStream qb = new DataOutputStream(q);
            byte[] text = query.getBytes(StandardCharsets.UTF_8);
            qb.writeInt(text.length);
            qb.write(text);
            qb.writeShort(0x0001); // consistency ONE
            qb.writeByte(0);       // no flags: no values, default paging
            send(out, 3, OP_QUERY, q.toByteArray());
            Frame result = read(in, 3);
            expect(result, OP_RESULT, "QUERY");
            printResult(result.body);
            System.exit(0);
        } catch (ConnectException e) {
            System.err.println("CqlProbe: nothing accepts connections on " + host + ":" + port + " (" + e.getMessage() + ")");
            System.exit(2);
        } catch (ServerError e) {
            System.err.println("CqlProbe: " + e.getMessage());
            System.exit(3);
        } catch (SocketTimeoutException e) {
            System.err.println("CqlProbe: no answer from " + host + ":" + port + " in time");
            System.exit(1);
        } catch (EOFException e) {
            System.err.println("CqlProbe: " + host + ":" + port + " closed the connection");
            System.exit(1);
        } catch (IOException | RuntimeException e) {
            System.err.println("CqlProbe: " + e);
            System.exit(1);
        }
    }

    private static void send(DataOutputStream out, int stream, int opcode, byte[] body) throws IOException {
        out.writeByte(0x04);  // request, protocol v4
        out.writeByte(0);     // flags
        out.writeShort(stream);
        out.writeByte(opcode);
        out.writeInt(body.length);
        out.write(body);
        out.flush();
    }

    private static Frame read(DataInputStream in, int stream) throws IOException {
        int version = in.readUnsignedByte();
        in.readUnsignedByte(); // flags (no compression, no tracing asked for)
        int got = in.readShort();
        int opcode = in.readUnsignedByte();
        int length = in.readInt();
        if (length < 0 || length > (256 << 20)) throw new IOException("bad frame length " + length);
        byte[] body = new byte[length];
        in.readFully(body);
        if ((version & 0x7f) != 4 && opcode != OP_ERROR)
            throw new IOException("the server answered with protocol version " + (version & 0x7f));
        if (got != stream && got != -1)
            throw new IOException("answer on stream " + got + ", expected " + stream);
        return new Frame(opcode, ByteBuffer.wrap(body));
    }

    private static void expect(Frame f, int opcode, String what) throws ServerError, IOException {
        if (f.opcode == OP_ERROR) {
            int code = f.body.getInt();
            throw new ServerError(what + " failed: error 0x" + Integer.toHexString(code) + ": " + string(f.body));
        }
        if (f.opcode != opcode)
            throw new IOException(what + ": unexpected opcode 0x" + Integer.toHexString(f.opcode));
    }

    private static void writeString(DataOutputStream out, String s) throws IOException {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        out.writeShort(b.length);
        out.write(b);
    }

    private static String string(ByteBuffer b) {
        int n = b.getShort() & 0xffff;
        byte[] s = new byte[n];
        b.get(s);
        return new String(s, StandardCharsets.UTF_8);
    }

    private static ByteBuffer bytes(ByteBuffer b) {
        int n = b.getInt();
        if (n < 0) return null;
        ByteBuffer v = b.slice();
        v.limit(n);
        b.position(b.position() + n);
        return v;
    }

    /** Reads a type [option]; returns its id (collections and UDTs are skipped over). */
    private static int option(ByteBuffer b) {
        int id = b.getShort() & 0xffff;
        switch (id) {
            case 0x0000: string(b); break;                       // custom
            case 0x0020: case 0x0022: option(b); break;          // list, set
            case 0x0021: option(b); option(b); break;            // map
            case 0x0030: {                                       // UDT
                string(b); string(b);
                int n = b.getShort() & 0xffff;
                for (int i = 0; i < n; i++) { string(b); option(b); }
                break;
            }
            case 0x0031: {                                       // tuple
                int n = b.getShort() & 0xffff;
                for (int i = 0; i < n; i++) option(b);
                break;
            }
            default: break;
        }
        return id;
    }

    private static String cell(int type, ByteBuffer v) {
        if (v == null) return "null";
        switch (type) {
            case 0x0001: case 0x000D:                   // ascii, varchar
                byte[] s = new byte[v.remaining()];
                v.get(s);
                return new String(s, StandardCharsets.UTF_8);
            case 0x0002: case 0x0005: case 0x000B:      // bigint, counter, timestamp
                return v.remaining() == 8 ? Long.toString(v.getLong()) : hex(v);
            case 0x0009:                                // int
                return v.remaining() == 4 ? Integer.toString(v.getInt()) : hex(v);
            case 0x0004:                                // boolean
                return v.remaining() == 1 ? Boolean.toString(v.get() != 0) : hex(v);
            case 0x000C: case 0x000F:                   // uuid, timeuuid
                return v.remaining() == 16 ? new UUID(v.getLong(), v.getLong()).toString() : hex(v);
            default:
                return hex(v);
        }
    }

    private static String hex(ByteBuffer v) {
        StringBuilder sb = new StringBuilder("0x");
        while (v.hasRemaining()) sb.append(String.format("%02x", v.get()));
        return sb.toString();
    }

    private static void printResult(ByteBuffer b) {
        int kind = b.getInt();
        switch (kind) {
            case 0x0001: System.out.println("(void)"); return;
            case 0x0003: System.out.println("(keyspace " + string(b) + ")"); return;
            case 0x0005: System.out.println("(schema change: " + string(b) + " " + string(b) + ")"); return;
            case 0x0002: break;
            default: System.out.println("(result kind " + kind + ")"); return;
        }
        int flags = b.getInt();
        int columns = b.getInt();
        if ((flags & 0x0002) != 0) bytes(b);            // paging state
        List<Integer> types = new ArrayList<>();
        if ((flags & 0x0004) == 0) {                    // metadata present
            boolean global = (flags & 0x0001) != 0;
            if (global) { string(b); string(b); }
            for (int i = 0; i < columns; i++) {
                if (!global) { string(b); string(b); }
                string(b);
                types.add(option(b));
            }
        }
        int rows = b.getInt();
        for (int r = 0; r < rows; r++) {
            StringBuilder line = new StringBuilder();
            for (int c = 0; c < columns; c++) {
                if (c > 0) line.append('\t');
                line.append(cell(c < types.size() ? types.get(c) : -1, bytes(b)));
            }
            System.out.println(line);
        }
    }
}
JAVA
}

# Compiles the probe when a javac is at hand; PROBE_OK=1 when it can be used.
build_probe() {
  PROBE_OK=0
  [ -n "${JAVAC:-}" ] || return 0
  write_probe_source
  if [ -f "$PROBE_DIR/CqlProbe.class" ] && cmp -s "$PROBE_DIR/CqlProbe.java.new" "$PROBE_DIR/CqlProbe.java"; then
    rm -f "$PROBE_DIR/CqlProbe.java.new"
  else
    mv "$PROBE_DIR/CqlProbe.java.new" "$PROBE_DIR/CqlProbe.java"
    rm -f "$PROBE_DIR"/*.class
    "$JAVAC" -nowarn -d "$PROBE_DIR" "$PROBE_DIR/CqlProbe.java" </dev/null >&2 || die "javac could not build the CQL probe"
  fi
  PROBE_OK=1
}

run_probe() { "$JAVA" -Xshare:auto -XX:TieredStopAtLevel=1 -Xmx64m -cp "$PROBE_DIR" CqlProbe 127.0.0.1 "$CQL_PORT" "$@" </dev/null; }

# ---------------------------------------------------------------------------------------------
# config

write_config() {
  mkdir -p "$CONF/triggers" "$LOGS" "$DATA/data" "$DATA/commitlog" "$DATA/saved_caches" "$DATA/hints" "$DATA/cdc_raw"
  cat > "$CONF/cassandra.yaml" <<YAML
# Written by scripts/cassandra.sh at each start; edit the script, not this file.
# One node for tests on 127.0.0.1: no auth, small caches and memtables.
cluster_name: 'govflow-test'
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
dynamic_snitch: false
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$STORAGE_PORT"

listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $STORAGE_PORT
start_native_transport: true
native_transport_port: $CQL_PORT

authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
network_authorizer: AllowAllNetworkAuthorizer

data_file_directories:
  - '$DATA/data'
commitlog_directory: '$DATA/commitlog'
saved_caches_directory: '$DATA/saved_caches'
hints_directory: '$DATA/hints'
cdc_raw_directory: '$DATA/cdc_raw'

# A fresh node has nothing to stay compatible with: Cassandra 5.0's own on-disk formats.
storage_compatibility_mode: NONE
sstable:
  selected_format: big

commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_total_space: 256MiB
hinted_handoff_enabled: false
disk_failure_policy: stop
commit_failure_policy: stop

memtable_allocation_type: heap_buffers
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
memtable_flush_writers: 1
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
concurrent_compactors: 1
key_cache_size: 16MiB
counter_cache_size: 8MiB
file_cache_size: 64MiB
networking_cache_size: 32MiB

# Tests drop and truncate often; skip the snapshot each of those would take.
auto_snapshot: false

# Lightweight transactions (INSERT ... IF NOT EXISTS, UPDATE ... IF).
paxos_variant: $PAXOS
cas_contention_timeout: 5000ms

# Timeouts with room for a busy 2-core test machine.
read_request_timeout: 10000ms
range_request_timeout: 20000ms
write_request_timeout: 5000ms
counter_write_request_timeout: 10000ms
truncate_request_timeout: 60000ms
request_timeout: 20000ms

# ScyllaDB's batch size limits (Cassandra's own fail at 50KiB).
batch_size_warn_threshold: 128KiB
batch_size_fail_threshold: 1024KiB
YAML

  cat > "$CONF/logback.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/cassandra.sh at each start. -->
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>$LOGS/system.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>$LOGS/system.log.%i</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.thinkaurelius.thrift" level="ERROR"/>
  <root level="INFO">
    <appender-ref ref="FILE"/>
  </root>
</configuration>
XML
}

jvm_flags() {
  JVM_FLAGS=(
    "$MARK"
    "-Xms$HEAP_MIN" "-Xmx$HEAP_MAX" -Xss512k
    -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -XX:+PerfDisableSharedMem
    "-XX:ErrorFile=$LOGS/hs_err_%p.log"
    "-javaagent:$(jamm_jar)"
    -Djava.net.preferIPv4Stack=true
    -Djdk.attach.allowAttachSelf=true
    -Dio.netty.tryReflectionSetAccessible=true
    # JPMS: what Cassandra 5.0 reaches into on Java 17
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
    --add-exports java.base/sun.nio.ch=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.math=ALL-UNNAMED
    --add-opens java.base/java.net=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.base/java.util.concurrent=ALL-UNNAMED
    --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    # Cassandra
    "-Dcassandra.config=file://$CONF/cassandra.yaml"
    "-Dlogback.configurationFile=file://$CONF/logback.xml"
    "-Dcassandra.logdir=$LOGS"
    "-Dcassandra.storagedir=$DATA"
    -Dcassandra-foreground=yes
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.superuser_setup_delay_ms=0
    -Dcassandra.shutdown_announce_in_ms=0
    "-Dcassandra.triggers_dir=$CONF/triggers"
  )
  # Schema changes skip the flush of the system tables that follows each one (CREATE TABLE
  # takes ~0.07 s instead of ~0.5 s); they stay in the commit log like any write.
  [ "${GOVFLOW_CASSANDRA_UNSAFE_SYSTEM:-1}" = 1 ] && JVM_FLAGS+=(-Dcassandra.unsafesystem=true)
  if [ -n "${GOVFLOW_CASSANDRA_JVM_OPTS:-}" ]; then
    local -a extra
    read -r -a extra <<<"$GOVFLOW_CASSANDRA_JVM_OPTS"
    JVM_FLAGS+=("${extra[@]}")
  fi
}

# ---------------------------------------------------------------------------------------------
# start / stop / status / wipe

# Waits until a CQL query answers (or, without javac, until the log says CQL listens and the
# port is open). On failure: the log's last lines, the node stopped, exit 1.
wait_ready() {
  local pid=$1 t0=$SECONDS last=-1 elapsed out
  say "waiting for CQL on 127.0.0.1:$CQL_PORT (pid $pid, up to ${START_TIMEOUT}s)"
  while :; do
    elapsed=$((SECONDS - t0))
    if ! alive "$pid"; then
      echo "cassandra.sh: the node (pid $pid) exited during start-up" >&2
      show_logs 60
      rm -f "$PIDFILE"
      exit 1
    fi
    if port_open "$CQL_PORT"; then
      if [ "$PROBE_OK" = 1 ]; then
        if out=$(run_probe 2>&1); then
          say "ready: Cassandra $out answers CQL on 127.0.0.1:$CQL_PORT after ${elapsed}s"
          return 0
        fi
      elif grep -q 'Starting listening for CQL clients' "$LOGS/system.log" 2>/dev/null; then
        say "ready (log line and open port; no javac for a protocol check) after ${elapsed}s"
        return 0
      fi
    fi
    if [ "$elapsed" -ge "$START_TIMEOUT" ]; then
      echo "cassandra.sh: no CQL answer on 127.0.0.1:$CQL_PORT after ${START_TIMEOUT}s${out:+ (last probe: $out)}" >&2
      show_logs 60
      echo "cassandra.sh: stopping the node that did not come up" >&2
      stop_pid "$pid" >&2
      exit 1
    fi
    if [ $((elapsed / 10)) -ne "$last" ] && [ "$elapsed" -gt 0 ]; then
      last=$((elapsed / 10))
      say "  ... ${elapsed}s: $(grep -v '^\s' "$LOGS/system.log" 2>/dev/null | tail -n1 | sed 's/^\([A-Z]*\) *\[[^]]*\] [^ ]* [^ ]* [^ ]* - /\1 /' | cut -c1-120)"
    fi
    sleep 1
  done
}

do_start() {
  lock
  find_java
  local pid
  if pid=$(node_pid); then
    if port_open "$CQL_PORT"; then
      say "already running (pid $pid, CQL on 127.0.0.1:$CQL_PORT)"
      return 0
    fi
    build_probe
    say "a start is under way (pid $pid); waiting for it"
    wait_ready "$pid"
    return 0
  fi
  rm -f "$PIDFILE"
  do_install
  local p
  for p in "$CQL_PORT" "$STORAGE_PORT"; do
    port_open "$p" && die "port $p on 127.0.0.1 is taken by another process (set GOVFLOW_CQL_PORT / GOVFLOW_CASSANDRA_STORAGE_PORT)"
  done
  build_probe
  write_config
  jvm_flags
  # This start's logs alone in system.log and stdout.log; the previous ones as *.prev.
  local f
  for f in system.log stdout.log; do [ -f "$LOGS/$f" ] && mv -f "$LOGS/$f" "$LOGS/$f.prev"; done
  rm -f "$LOGS"/system.log.[0-9]*
  : > "$LOGS/stdout.log"
  # Cassandra mlockall()s the JVM at start-up. That succeeds only with CAP_IPC_LOCK, i.e. as
  # root, and then pins every page mapped so far (the whole -Xms heap included) in memory.
  # Without the capability the call fails harmlessly (one warning in the log), as it does for
  # any ordinary user; so drop it when running as root.
  local -a no_mlock=()
  if [ "$(id -u)" = 0 ] && [ "${GOVFLOW_CASSANDRA_MLOCK:-0}" != 1 ] && command -v setpriv >/dev/null 2>&1 &&
     setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock -- true 2>/dev/null; then
    no_mlock=(setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock --)
  fi
  say "starting Cassandra $CASSANDRA_VERSION (CQL 127.0.0.1:$CQL_PORT, storage $STORAGE_PORT, heap $HEAP_MIN..$HEAP_MAX, home $HOME_DIR)"
  # Own session: a Ctrl-C aimed at the caller doesn't reach the node. Run from the home dir,
  # so nothing the JVM may write by default lands in the caller's directory.
  (
    cd "$HOME_DIR"
    exec setsid "${no_mlock[@]}" "$JAVA" "${JVM_FLAGS[@]}" -cp "$CONF:$LIB/*" org.apache.cassandra.service.CassandraDaemon \
      </dev/null >>"$LOGS/stdout.log" 2>&1 9>&-
  ) &
  pid=$!
  echo "$pid" > "$PIDFILE"
  # $! is the JVM itself (setsid execs in place); should setsid have forked, find the JVM by
  # its marker instead.
  local n=0 found=""
  while [ "$n" -lt 50 ]; do
    if found=$(node_pid); then break; fi
    sleep 0.1; n=$((n + 1))
  done
  if [ -n "$found" ] && [ "$found" != "$pid" ]; then pid=$found; echo "$pid" > "$PIDFILE"; fi
  wait_ready "$pid"
}

# SIGTERM, SIGKILL after STOP_TIMEOUT; then waits for the CQL port to close.
stop_pid() {
  local pid=$1 t0=$SECONDS
  say "stopping pid $pid (SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  while alive "$pid"; do
    if [ $((SECONDS - t0)) -ge "$STOP_TIMEOUT" ]; then
      say "still running after ${STOP_TIMEOUT}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  local n=0
  while alive "$pid" && [ "$n" -lt 40 ]; do sleep 0.25; n=$((n + 1)); done
  alive "$pid" && die "pid $pid survives SIGKILL"
  n=0
  while port_open "$CQL_PORT" && [ "$n" -lt 40 ]; do sleep 0.25; n=$((n + 1)); done
  port_open "$CQL_PORT" && echo "cassandra.sh: warning: port $CQL_PORT is still open, held by another process" >&2
  rm -f "$PIDFILE"
  say "stopped after $((SECONDS - t0))s"
}

do_stop() {
  lock
  local pid
  if pid=$(node_pid); then
    stop_pid "$pid"
  else
    rm -f "$PIDFILE"
    say "not running"
  fi
}

do_status() {
  local pid
  if pid=$(node_pid); then
    if port_open "$CQL_PORT"; then
      echo "running (pid $pid, CQL 127.0.0.1:$CQL_PORT, home $HOME_DIR)"
    else
      echo "starting (pid $pid, CQL port $CQL_PORT not open yet, home $HOME_DIR)"
    fi
    return 0
  fi
  if port_open "$CQL_PORT"; then
    echo "stopped (but port $CQL_PORT is taken by some other process)"
  else
    echo "stopped"
  fi
  return 3
}

do_wipe() {
  do_stop
  [ -e "$HOME_MARK" ] || die "$HOME_DIR was not made by this script; not wiping it"
  rm -rf "$DATA" "$LOGS"
  say "removed $DATA and $LOGS (jars kept in $LIB)"
}

do_probe() {
  ensure_home
  find_java
  [ -n "$JAVAC" ] || die "no javac beside $JAVA: the probe needs a JDK"
  build_probe
  run_probe "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  install) lock; do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  wipe) do_wipe ;;
  probe) do_probe "$@" ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) echo "usage: $0 install|start|stop|status|wipe|probe [QUERY]" >&2; exit 2 ;;
esac
