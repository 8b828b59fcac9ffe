//! Runs the npm-installed anvil (`node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`,
//! installed by `scripts/setup.sh`) on 127.0.0.1 with a free port for the lifetime of an
//! [`Anvil`] value.
//!
//! No orphan is left behind: anvil is killed and reaped on [`Anvil::stop`] and on drop (so on
//! errors and on the signal paths that unwind), it runs in its own process group (a Ctrl-C in
//! the terminal reaches govflow, which then stops it, instead of killing the chain under a
//! running indexer), and a tiny `sh` guardian holding a pipe from this process kills it if this
//! process dies without unwinding (SIGKILL, abort).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::chain::DevChain;
use super::DemoError;

/// Where the binary lives, relative to the repository (or the current directory).
pub const ANVIL_BIN: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";
/// The chain id the demo runs.
pub const CHAIN_ID: u64 = 31337;
/// Anvil's default mnemonic: its first accounts are funded; account 0 deploys the demo.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
/// How long anvil may take to answer its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Kept of anvil's stderr, for error messages.
const OUTPUT_CAP: usize = 64 * 1024;

/// Finds the anvil binary: `./node_modules/...` in the current directory or any of its
/// parents, then next to the running executable's repository (any ancestor of its directory,
/// e.g. `target/release/govflow` → the repository root).
pub fn find_binary() -> Result<PathBuf, DemoError> {
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
    Err(DemoError::AnvilMissing { looked: looked.iter().take(3).map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ") })
}

/// A running anvil; killed and reaped on drop.
pub struct Anvil {
    child: Option<Child>,
    guardian: Option<(Child, ChildStdin)>,
    chain: DevChain,
    port: u16,
    output: Arc<Mutex<Vec<u8>>>,
    /// anvil's `--cache-path`, where it persists states once it holds more than it keeps in
    /// memory (hundreds of MB for a few thousand blocks; by default in `~/.foundry/anvil/tmp`,
    /// left there forever); removed when anvil stops.
    cache: std::path::PathBuf,
}

impl Anvil {
    /// Starts anvil on 127.0.0.1 with a free port and chain id 31337 (automine, the default
    /// mnemonic) and waits until its RPC answers.
    pub async fn start() -> Result<Anvil, DemoError> {
        let bin = find_binary()?;
        let mut last_failure = String::new();
        // The free port is found by binding port 0 and released before anvil binds it, so
        // another process could take it in between: retry with another port if anvil fails.
        for _attempt in 0..5 {
            let port = free_port()?;
            let cache = std::env::temp_dir().join(format!("govflow-demo-anvil-{}-{port}", std::process::id()));
            let mut cmd = Command::new(&bin);
            cmd.arg("--cache-path").arg(&cache);
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--chain-id", &CHAIN_ID.to_string()])
                .args(["--mnemonic", DEV_MNEMONIC, "--accounts", "10", "--quiet"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            own_process_group(&mut cmd);
            let mut child = cmd.spawn().map_err(|e| DemoError::AnvilStart(format!("cannot run {}: {e}", bin.display())))?;
            let output = Arc::new(Mutex::new(Vec::new()));
            if let Some(mut stderr) = child.stderr.take() {
                let out = output.clone();
                // Drained so that anvil never blocks on a full pipe.
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stderr.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                        if o.len() < OUTPUT_CAP {
                            o.extend_from_slice(&buf[..n]);
                        }
                    }
                });
            }
            let guardian = spawn_guardian(child.id(), &cache);
            let url = format!("http://127.0.0.1:{port}");
            match wait_ready(&mut child, &url, &output).await {
                Ok(chain) => {
                    if chain.chain_id() != CHAIN_ID {
                        last_failure = format!("anvil reports chain id {}, expected {CHAIN_ID}", chain.chain_id());
                    } else {
                        return Ok(Anvil { child: Some(child), guardian, chain, port, output, cache });
                    }
                }
                Err(e) => last_failure = e,
            }
            let mut failed = Anvil { child: Some(child), guardian, chain: DevChain::with_chain_id(&url, CHAIN_ID)?, port, output, cache };
            failed.stop();
        }
        Err(DemoError::AnvilStart(last_failure))
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

    /// The RPC handle (also reachable through `Deref`).
    pub fn chain(&self) -> &DevChain {
        &self.chain
    }

    /// What anvil printed on stderr so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Kills and reaps anvil (idempotent; also done on drop).
    pub fn stop(&mut self) {
        // The guardian first, so that it can never signal a recycled pid once anvil is reaped.
        if let Some((mut g, stdin)) = self.guardian.take() {
            let _ = g.kill();
            let _ = g.wait();
            drop(stdin);
        }
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(3));
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

async fn wait_ready(child: &mut Child, url: &str, output: &Arc<Mutex<Vec<u8>>>) -> Result<DevChain, String> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let out = String::from_utf8_lossy(&output.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
            return Err(format!("anvil exited with {status}: {}", out.trim()));
        }
        if let Ok(chain) = DevChain::connect(url).await {
            return Ok(chain);
        }
        if start.elapsed() > STARTUP_TIMEOUT {
            return Err(format!("anvil's RPC at {url} did not answer within {STARTUP_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM, then SIGKILL if it does not exit within `grace`; always reaps.
fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if sent {
        let t = Instant::now();
        while t.elapsed() < grace {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `sh` waiting on a pipe from this process: when the pipe closes because this process died
/// without stopping anvil, it kills anvil. Best effort (the demo works without it).
fn spawn_guardian(pid: u32, cache: &std::path::Path) -> Option<(Child, ChildStdin)> {
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
            tracing::debug!(target: "demo", error = %e, "no anvil guardian (sh not available)");
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

fn free_port() -> Result<u16, DemoError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| DemoError::AnvilStart(format!("no free port: {e}")))?;
    l.local_addr().map(|a| a.port()).map_err(|e| DemoError::AnvilStart(format!("no free port: {e}")))
}
