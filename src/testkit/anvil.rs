//! Runs the npm-installed anvil (`node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`,
//! installed by `scripts/setup.sh`) on 127.0.0.1 for the lifetime of an [`Anvil`] value.
//!
//! No orphan is left behind: anvil is killed and reaped on [`Anvil::stop`] and on drop (so on
//! errors, panics and the signal paths that unwind), it runs in its own process group (a Ctrl-C
//! in the terminal reaches the owner, which then stops it, instead of killing the chain under a
//! running indexer), and a tiny `sh` guardian holding a pipe from this process kills it and
//! removes its cache if this process dies without unwinding (SIGKILL, abort).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ethers::signers::{LocalWallet, Signer};

use super::chain::DevChain;
use super::{dev_wallets, TestkitError, DEV_ACCOUNTS, DEV_MNEMONIC};

/// Where the binary lives, relative to the repository (or the current directory).
pub const ANVIL_BIN: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";
/// The chain id anvil runs unless told otherwise.
pub const CHAIN_ID: u64 = 31337;
/// Kept of anvil's stderr, for error messages.
const OUTPUT_CAP: usize = 64 * 1024;
/// Attempts to start anvil (a port taken in between, a slow start) before giving up.
const ATTEMPTS: usize = 5;

/// How anvil gets its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortChoice {
    /// `--port 0`: anvil binds a port the kernel gives it and reports it, so two anvils
    /// started at once can never share one.
    Anvil,
    /// A free port is picked here and passed as `--port N`, so that it stands in anvil's
    /// command line and cache directory name (a port taken in between is retried).
    Picked,
}

/// Options for [`Anvil::start_with`].
#[derive(Debug, Clone)]
pub struct AnvilOptions {
    /// `--chain-id` (default 31337).
    pub chain_id: u64,
    /// How the port is chosen (default: by anvil).
    pub port: PortChoice,
    /// `--block-time`: mine on an interval as well as on each transaction.
    pub block_time: Option<u64>,
    /// `--hardfork` (anvil 1.7.1 defaults to its newest fork).
    pub hardfork: Option<String>,
    /// `--timestamp`: the genesis block's timestamp.
    pub genesis_timestamp: Option<u64>,
    /// `--code-size-limit`.
    pub code_size_limit: Option<usize>,
    /// Any further command-line arguments.
    pub extra_args: Vec<String>,
    /// How long to wait for the RPC to answer.
    pub startup_timeout: Duration,
    /// Name prefix of anvil's `--cache-path` in the temporary directory, followed by this
    /// process id and the port (or a sequence number when anvil picks the port).
    pub cache_prefix: String,
    /// On stop: SIGTERM and this long to exit before SIGKILL; `None` kills at once.
    pub stop_grace: Option<Duration>,
}

impl Default for AnvilOptions {
    fn default() -> Self {
        AnvilOptions {
            chain_id: CHAIN_ID,
            port: PortChoice::Anvil,
            block_time: None,
            hardfork: None,
            genesis_timestamp: None,
            code_size_limit: None,
            extra_args: Vec::new(),
            startup_timeout: Duration::from_secs(30),
            cache_prefix: "govflow-anvil".to_owned(),
            stop_grace: None,
        }
    }
}

/// Finds the anvil binary: `./node_modules/...` in the current directory or any of its
/// parents, then next to the running executable's repository (any ancestor of its directory,
/// e.g. `target/release/govflow` → the repository root), then the repository it was built from.
pub fn find_binary() -> Result<PathBuf, TestkitError> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        if let Some(dir) = exe.parent() {
            roots.extend(dir.ancestors().map(Path::to_path_buf));
        }
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut looked = Vec::new();
    for root in roots {
        let candidate = root.join(ANVIL_BIN);
        if candidate.is_file() {
            return Ok(candidate);
        }
        if !looked.contains(&candidate) {
            looked.push(candidate);
        }
    }
    Err(TestkitError::AnvilMissing { looked: looked.iter().take(3).map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ") })
}

/// A running anvil; killed and reaped on drop. Derefs to [`DevChain`] for the RPC helpers.
pub struct Anvil {
    child: Option<Child>,
    guardian: Option<(Child, ChildStdin)>,
    chain: DevChain,
    port: u16,
    wallets: Vec<LocalWallet>,
    output: Arc<Mutex<Vec<u8>>>,
    /// anvil's `--cache-path`, where it persists states once it holds more than it keeps in
    /// memory (hundreds of MB for a few thousand blocks; by default in `~/.foundry/anvil/tmp`,
    /// left there forever); removed when anvil stops.
    cache: PathBuf,
    stop_grace: Option<Duration>,
}

impl Anvil {
    /// Starts anvil with [`AnvilOptions::default`].
    pub async fn start() -> Result<Anvil, TestkitError> {
        Anvil::start_with(AnvilOptions::default()).await
    }

    /// Starts anvil on 127.0.0.1 with the [`DEV_MNEMONIC`] accounts funded (automine unless a
    /// block time is given) and waits until its RPC answers with the expected chain id.
    pub async fn start_with(opts: AnvilOptions) -> Result<Anvil, TestkitError> {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let bin = find_binary()?;
        let mut last_failure = String::new();
        for _attempt in 0..ATTEMPTS {
            let (port_arg, suffix) = match opts.port {
                PortChoice::Anvil => (0, format!("n{}", STARTED.fetch_add(1, Ordering::Relaxed))),
                PortChoice::Picked => {
                    let p = free_port()?;
                    (p, p.to_string())
                }
            };
            let cache = std::env::temp_dir().join(format!("{}-{}-{suffix}", opts.cache_prefix, std::process::id()));
            let mut cmd = Command::new(&bin);
            cmd.arg("--cache-path").arg(&cache);
            cmd.args(["--host", "127.0.0.1", "--port", &port_arg.to_string(), "--chain-id", &opts.chain_id.to_string()]).args([
                "--mnemonic",
                DEV_MNEMONIC,
                "--accounts",
                &DEV_ACCOUNTS.to_string(),
            ]);
            if let Some(t) = opts.block_time {
                cmd.arg("--block-time").arg(t.to_string());
            }
            if let Some(h) = &opts.hardfork {
                cmd.arg("--hardfork").arg(h);
            }
            if let Some(ts) = opts.genesis_timestamp {
                cmd.arg("--timestamp").arg(ts.to_string());
            }
            if let Some(limit) = opts.code_size_limit {
                cmd.arg("--code-size-limit").arg(limit.to_string());
            }
            cmd.args(&opts.extra_args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            own_process_group(&mut cmd);
            let mut child = cmd.spawn().map_err(|e| TestkitError::AnvilStart(format!("cannot run {}: {e}", bin.display())))?;
            let output = Arc::new(Mutex::new(Vec::new()));
            if let Some(stderr) = child.stderr.take() {
                drain_stderr(stderr, output.clone());
            }
            let port_rx = child.stdout.take().map(read_port);
            let guardian = spawn_guardian(child.id(), &cache);
            let url = |port: u16| format!("http://127.0.0.1:{port}");
            let mut anvil = Anvil {
                child: Some(child),
                guardian,
                chain: DevChain::with_chain_id(&url(port_arg), opts.chain_id)?,
                port: port_arg,
                wallets: dev_wallets().iter().map(|w| w.clone().with_chain_id(opts.chain_id)).collect(),
                output,
                cache,
                stop_grace: opts.stop_grace,
            };
            let ready = match anvil.wait_port(port_rx, opts.startup_timeout).await {
                Ok(port) => {
                    anvil.port = port;
                    anvil.chain = DevChain::with_chain_id(&url(port), opts.chain_id)?;
                    anvil.wait_ready(opts.startup_timeout).await
                }
                Err(e) => Err(e),
            };
            match ready {
                Ok(()) => return Ok(anvil),
                Err(e) => {
                    last_failure = e;
                    anvil.stop();
                }
            }
        }
        Err(TestkitError::AnvilStart(last_failure))
    }

    /// The port from anvil's banner ("Listening on 127.0.0.1:<port>"): only an anvil that bound
    /// its port prints it, so a port taken by another process is never mistaken for ours.
    async fn wait_port(&mut self, port_rx: Option<mpsc::Receiver<u16>>, timeout: Duration) -> Result<u16, String> {
        let Some(port_rx) = port_rx else { return Err("anvil's stdout is not captured".into()) };
        let deadline = Instant::now() + timeout;
        loop {
            match port_rx.try_recv() {
                Ok(port) => return Ok(port),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if Instant::now() > deadline || self.exited() => break,
                Err(TryRecvError::Empty) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        // Give the stderr thread a moment to collect the last words.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(format!("anvil did not report its port (exited: {}): {}", self.exited(), self.output().trim()))
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(format!("anvil exited with {status}: {}", self.output().trim()));
            }
            if let Ok(id) = self.chain.request::<_, ethers::types::U64>("eth_chainId", ()).await {
                if id.as_u64() != self.chain.chain_id() {
                    return Err(format!("anvil reports chain id {id}, expected {}", self.chain.chain_id()));
                }
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!("anvil's RPC at {} did not answer within {timeout:?}: {}", self.chain.url(), self.output().trim()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// The JSON-RPC URL, `http://127.0.0.1:<port>`.
    pub fn rpc_url(&self) -> &str {
        self.chain.url()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The RPC handle (also reachable through `Deref`); clone it to keep it elsewhere.
    pub fn chain(&self) -> &DevChain {
        &self.chain
    }

    /// The [`DEV_ACCOUNTS`] funded dev accounts, with this chain's id; account 0 deploys.
    pub fn accounts(&self) -> &[LocalWallet] {
        &self.wallets
    }

    /// anvil's `--cache-path` (removed when it stops).
    pub fn cache_path(&self) -> &Path {
        &self.cache
    }

    /// What anvil printed on stderr so far (capped at 64 KiB).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Kills and reaps anvil and removes its cache (idempotent; also done on drop).
    pub fn stop(&mut self) {
        // The guardian first, so that it can never signal a recycled pid once anvil is reaped.
        if let Some((mut g, stdin)) = self.guardian.take() {
            let _ = g.kill();
            let _ = g.wait();
            drop(stdin);
        }
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, self.stop_grace);
            let _ = std::fs::remove_dir_all(&self.cache);
        }
    }
}

impl Deref for Anvil {
    type Target = DevChain;
    fn deref(&self) -> &DevChain {
        &self.chain
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Anvil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anvil").field("url", &self.rpc_url()).field("pid", &self.pid()).finish()
    }
}

/// Drains stderr so that anvil never blocks on a full pipe, keeping the start for messages.
fn drain_stderr(mut stderr: impl Read + Send + 'static, output: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut o = output.lock().unwrap_or_else(|p| p.into_inner());
            if o.len() < OUTPUT_CAP {
                o.extend_from_slice(&buf[..n]);
            }
        }
    });
}

/// Reads stdout (the banner up to "Listening on <addr>", then a line per RPC call): sends the
/// port once and drains the rest.
fn read_port(stdout: impl Read + Send + 'static) -> mpsc::Receiver<u16> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.trim().strip_prefix("Listening on ") {
                if let (Some(port), Some(tx)) = (rest.rsplit(':').next().and_then(|p| p.trim().parse::<u16>().ok()), tx.take()) {
                    let _ = tx.send(port);
                }
            }
        }
    });
    rx
}

/// SIGTERM, then SIGKILL if it does not exit within `grace` (at once without one); always reaps.
fn terminate(child: &mut Child, grace: Option<Duration>) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(grace) = grace {
        let sent =
            Command::new("kill").args(["-TERM", &child.id().to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        if sent {
            let t = Instant::now();
            while t.elapsed() < grace {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `sh` waiting on a pipe from this process: when the pipe closes because this process died
/// without stopping anvil, it kills anvil and removes its cache. Best effort (anvil works
/// without it).
fn spawn_guardian(pid: u32, cache: &Path) -> Option<(Child, ChildStdin)> {
    // Single quotes suffice for a path without any (the temp dir and our own name).
    let cache = cache.display().to_string();
    let cleanup = if cache.contains('\'') { String::new() } else { format!("; sleep 2; rm -rf '{cache}'") };
    let script = format!("read -r _ignored; kill -TERM {pid} 2>/dev/null{cleanup}");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    own_process_group(&mut cmd);
    match cmd.spawn() {
        Ok(mut g) => match g.stdin.take() {
            Some(mut stdin) => {
                // Nothing is ever written: a newline would release it. Flush to surface errors.
                let _ = stdin.flush();
                Some((g, stdin))
            }
            None => {
                let _ = g.kill();
                let _ = g.wait();
                None
            }
        },
        Err(e) => {
            tracing::debug!(target: "testkit", error = %e, "no anvil guardian (sh not available)");
            None
        }
    }
}

#[cfg(unix)]
fn own_process_group(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
}

#[cfg(not(unix))]
fn own_process_group(_cmd: &mut Command) {}

fn free_port() -> Result<u16, TestkitError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| TestkitError::AnvilStart(format!("no free port: {e}")))?;
    l.local_addr().map(|a| a.port()).map_err(|e| TestkitError::AnvilStart(format!("no free port: {e}")))
}
