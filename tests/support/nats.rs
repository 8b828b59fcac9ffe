//! Runs the Go-built `nats-server` (`.tools/bin/nats-server`, installed by `scripts/nats.sh
//! install`, which `scripts/setup.sh` calls) with JetStream on a free loopback port, for the
//! lifetime of a [`NatsServer`] value.
//!
//! ```ignore
//! let mut nats = NatsServer::start();              // blocks ~50 ms; fine inside #[tokio::test]
//! let client = async_nats::connect(nats.url()).await?;
//! // ...
//! nats.restart();                                  // same port, same JetStream store
//! ```
//!
//! The server binds port `-1` (a port of the kernel's choosing) and the harness reads the real
//! port from its log line "Listening for client connections on 127.0.0.1:<port>", so servers
//! started at once by parallel tests never race for a port. It counts as ready once it has
//! logged "Server is ready" and a TCP client receives an `INFO` line with `"jetstream":true`.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the nats-server binary relative to `CARGO_MANIFEST_DIR`.
pub const NATS_SERVER_BIN: &str = ".tools/bin/nats-server";
/// How long [`NatsServer::start`] and [`NatsServer::restart`] wait for the server to be ready.
pub const NATS_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`NatsServer::restart`] keeps retrying while the old port cannot be bound yet.
pub const NATS_REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`NatsServer::stop`] waits after SIGTERM before SIGKILL.
pub const NATS_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The server's output kept for error messages (the most recent bytes).
const OUTPUT_CAP: usize = 64 * 1024;

/// What the log-reading threads report about the current process.
enum Event {
    Port(u16),
    Ready,
    /// "Error listening on port: ... address already in use".
    PortTaken,
}

/// Why a launch failed: the message (with the server's output) and whether the client port
/// could not be bound.
struct LaunchError {
    message: String,
    port_taken: bool,
}

/// A running nats-server with JetStream (store in a temporary directory, removed on drop).
/// Killed (SIGKILL) and reaped on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    output: Arc<Mutex<Vec<u8>>>,
}

impl NatsServer {
    /// Path of the nats-server binary (panics with a hint if it is missing).
    pub fn binary() -> PathBuf {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(NATS_SERVER_BIN);
        if !path.is_file() {
            panic!(
                "nats-server binary not found at {}: run scripts/setup.sh (or scripts/nats.sh install, \
                 which builds it with `go install`)",
                path.display()
            );
        }
        path
    }

    /// Starts nats-server with JetStream on 127.0.0.1 and a port of the kernel's choosing, with
    /// its store in a new temporary directory, and waits (blocking) until it is ready.
    pub fn start() -> NatsServer {
        let store = tempfile::Builder::new()
            .prefix("govflow-nats-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for the JetStream store: {e}"));
        let mut server = NatsServer { child: None, port: 0, store, output: Arc::new(Mutex::new(Vec::new())) };
        match server.launch(None) {
            Ok(()) => server,
            Err(e) => panic!("nats-server did not start: {}", e.message),
        }
    }

    /// Stops the server (gracefully, as [`stop`](Self::stop), if it runs) and starts a new
    /// process on the same port with the same store directory, so JetStream streams and
    /// messages survive; waits until it is ready. Works after [`kill`](Self::kill) too. Retries
    /// for up to [`NATS_REBIND_TIMEOUT`] while the port cannot be bound yet.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.note(&format!("---- govflow test harness: restarting nats-server on port {port}\n"));
        let t0 = Instant::now();
        loop {
            match self.launch(Some(port)) {
                Ok(()) => return,
                Err(e) if e.port_taken && t0.elapsed() < NATS_REBIND_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("nats-server did not restart on port {port}: {}", e.message),
            }
        }
    }

    /// Spawns one process (`port` None: `-p -1`) and waits until it is ready; on failure the
    /// process is killed and reaped and the error carries the server's output.
    fn launch(&mut self, port: Option<u16>) -> Result<(), LaunchError> {
        debug_assert!(self.child.is_none());
        let bin = NatsServer::binary();
        let port_arg = port.map_or_else(|| "-1".to_string(), |p| p.to_string());
        let mut child = Command::new(&bin)
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(&port_arg)
            .arg("-js")
            .arg("-sd")
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LaunchError { message: format!("cannot spawn {}: {e}", bin.display()), port_taken: false })?;

        // Drain both pipes so the server can never block on a full one; keep the output and
        // report the port and readiness from the log lines (nats-server logs to stderr).
        let (tx, rx) = mpsc::channel::<Event>();
        if let Some(stderr) = child.stderr.take() {
            drain(stderr, Arc::clone(&self.output), tx.clone());
        }
        if let Some(stdout) = child.stdout.take() {
            drain(stdout, Arc::clone(&self.output), tx);
        } else {
            drop(tx);
        }

        match wait_ready(&mut child, &rx, port, NATS_STARTUP_TIMEOUT) {
            Ok(actual) => {
                self.port = actual;
                self.child = Some(child);
                Ok(())
            }
            Err((e, port_taken)) => {
                let _ = child.kill();
                let status = child.wait().ok();
                // Let the drain threads collect the last words.
                std::thread::sleep(Duration::from_millis(50));
                let message = format!(
                    "{e} (args -a 127.0.0.1 -p {port_arg} -js -sd {}; exit status {status:?}); output:\n{}",
                    self.store.path().display(),
                    self.output().trim_end()
                );
                Err(LaunchError { message, port_taken })
            }
        }
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory given as `-sd`; JetStream keeps its data in `<store_dir>/jetstream`.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Process id of the running server; None after [`stop`](Self::stop) or [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the server process is still alive (it may have exited by itself).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// What the server printed so far, across restarts (the last 64 KiB).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Graceful stop: SIGTERM (JetStream flushes and shuts down), SIGKILL after
    /// [`NATS_STOP_TIMEOUT`]; reaps the process. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if matches!(child.try_wait(), Ok(None)) {
            // The child is not reaped yet, so its pid cannot have been reused.
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
            let deadline = Instant::now() + NATS_STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL, as a crash would; reaps the process. Idempotent. Data JetStream had written
    /// survives in the store (it is in the OS page cache), so [`restart`](Self::restart) sees it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn note(&self, line: &str) {
        push_capped(&mut self.output.lock().unwrap(), line.as_bytes());
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer").field("url", &self.url()).field("pid", &self.pid()).field("store_dir", &self.store_dir()).finish()
    }
}

/// Appends `bytes`, then keeps only the last [`OUTPUT_CAP`] bytes.
fn push_capped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    if out.len() > OUTPUT_CAP {
        let excess = out.len() - OUTPUT_CAP;
        out.drain(..excess);
    }
}

/// Reads `pipe` line by line on its own thread until it closes, into `output`, and reports the
/// client port and readiness on `events`.
fn drain(pipe: impl Read + Send + 'static, output: Arc<Mutex<Vec<u8>>>, events: Sender<Event>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            push_capped(&mut output.lock().unwrap(), &line);
            let text = String::from_utf8_lossy(&line);
            if let Some((_, rest)) = text.split_once("Listening for client connections on ") {
                if let Some(port) = rest.trim().rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) {
                    let _ = events.send(Event::Port(port));
                }
            } else if text.contains("Server is ready") {
                let _ = events.send(Event::Ready);
            } else if text.contains("Error listening on port") && text.contains("address already in use") {
                let _ = events.send(Event::PortTaken);
            }
        }
    });
}

/// Waits for the port and "Server is ready" log lines, then for an `INFO` line announcing
/// JetStream on a TCP connection. Returns the client port, or the error and whether the server
/// reported that the port was taken.
fn wait_ready(child: &mut Child, events: &Receiver<Event>, want_port: Option<u16>, timeout: Duration) -> Result<u16, (String, bool)> {
    let deadline = Instant::now() + timeout;
    let mut port = None;
    let mut ready = false;
    let mut port_taken = false;
    let fail = |e: String, port_taken: bool| Err((e, port_taken));
    while port.is_none() || !ready {
        match events.recv_timeout(Duration::from_millis(20)) {
            Ok(Event::Port(p)) => {
                if let Some(want) = want_port.filter(|w| *w != p) {
                    return fail(format!("nats-server listens on port {p}, expected {want}"), false);
                }
                port = Some(p);
            }
            Ok(Event::Ready) => ready = true,
            Ok(Event::PortTaken) => port_taken = true,
            Err(RecvTimeoutError::Disconnected) => {
                // Both pipes closed: the server is gone (or will be in a moment).
                let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                let what = if port_taken { "could not bind its port" } else { "exited during start-up" };
                return fail(format!("nats-server {what} ({status})"), port_taken);
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            return fail(format!("nats-server not ready after {timeout:?} (client port logged: {port:?}, \"Server is ready\" logged: {ready})"), port_taken);
        }
    }
    let port = port.unwrap();
    loop {
        let last = match read_info(port) {
            Ok(info) if info.contains("\"jetstream\":true") => return Ok(port),
            Ok(info) => return fail(format!("nats-server on port {port} does not announce JetStream: {info}"), false),
            Err(e) => e,
        };
        if let Ok(Some(status)) = child.try_wait() {
            return fail(format!("nats-server exited with {status}"), false);
        }
        if Instant::now() > deadline {
            return fail(format!("no INFO from nats-server on port {port} after {timeout:?}: {last}"), false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects to 127.0.0.1:`port` and returns the server's first protocol line (`INFO {...}`).
fn read_info(port: u16) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&mut stream).read_line(&mut line).map_err(|e| format!("read INFO: {e}"))?;
    if !line.starts_with("INFO ") {
        return Err(format!("expected an INFO line, got {line:?}"));
    }
    Ok(line.trim_end().to_string())
}
