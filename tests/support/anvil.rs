//! Runs the npm-installed anvil (`node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`) on a
//! free loopback port for the lifetime of an [`Anvil`] value.

use std::io::{BufRead, BufReader, Read};
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ethers::signers::coins_bip39::English;
use ethers::signers::{LocalWallet, MnemonicBuilder, Signer};
use ethers::types::{Address, U64};

use super::chain::Chain;

/// Anvil's default mnemonic; its first 10 accounts are funded with 10 000 ETH each.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
/// Number of funded dev accounts.
pub const DEV_ACCOUNTS: usize = 10;
/// Path of the anvil binary relative to `CARGO_MANIFEST_DIR`.
pub const ANVIL_BIN: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// The 10 dev wallets (derived once per test binary), without a chain id.
pub fn dev_wallets() -> &'static [LocalWallet] {
    static WALLETS: OnceLock<Vec<LocalWallet>> = OnceLock::new();
    WALLETS.get_or_init(|| {
        (0..DEV_ACCOUNTS as u32)
            .map(|i| MnemonicBuilder::<English>::default().phrase(DEV_MNEMONIC).index(i).and_then(|b| b.build()).expect("derive dev wallet"))
            .collect()
    })
}

/// Options for [`Anvil::start_with`].
#[derive(Debug, Clone)]
pub struct AnvilOptions {
    /// `--chain-id` (default 31337).
    pub chain_id: u64,
    /// `--block-time`: mine on an interval as well as (instead of) on each transaction.
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
}

impl Default for AnvilOptions {
    fn default() -> Self {
        AnvilOptions {
            chain_id: 31337,
            block_time: None,
            hardfork: None,
            genesis_timestamp: None,
            code_size_limit: None,
            extra_args: Vec::new(),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

/// A running anvil; killed (and reaped) on drop. Derefs to [`Chain`] for the RPC helpers
/// (`mine`, `increase_time`, `snapshot`, `revert`, `set_automine`, `block_number`, ...).
pub struct Anvil {
    child: Option<Child>,
    chain: Chain,
    port: u16,
    wallets: Vec<LocalWallet>,
    output: Arc<Mutex<Vec<u8>>>,
    /// anvil's `--cache-path`: the states it persists on disk once it holds more than it keeps
    /// in memory (hundreds of MB for a few thousand blocks). By default they go to
    /// `~/.foundry/anvil/tmp` and stay there after a kill; here they go with the Anvil.
    _cache: tempfile::TempDir,
}

impl Anvil {
    /// Path of the anvil binary (panics with a hint if it is missing).
    pub fn binary() -> PathBuf {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(ANVIL_BIN);
        if !path.is_file() {
            panic!(
                "anvil binary not found at {}: run scripts/setup.sh (it installs the npm packages, \
                 including @foundry-rs/anvil-linux-amd64)",
                path.display()
            );
        }
        path
    }

    /// Starts anvil with the default options.
    pub async fn start() -> Anvil {
        Anvil::start_with(AnvilOptions::default()).await
    }

    /// Starts anvil on 127.0.0.1 with a free port and waits until its RPC answers.
    pub async fn start_with(opts: AnvilOptions) -> Anvil {
        let bin = Anvil::binary();
        let mut last_failure = String::new();
        // anvil binds port 0 itself and prints the port the kernel gave it ("Listening on
        // 127.0.0.1:<port>"), so two anvils started at once can never share a port. (Picking a
        // free port here and releasing it let a parallel test's anvil take the same port while
        // ours failed to bind: both tests then talked to one chain.)
        for _attempt in 0..3 {
            let cache = tempfile::Builder::new().prefix("govflow-anvil-").tempdir().expect("anvil cache directory");
            let mut cmd = Command::new(&bin);
            cmd.arg("--cache-path").arg(cache.path());
            cmd.arg("--host")
                .arg("127.0.0.1")
                .arg("--port")
                .arg("0")
                .arg("--chain-id")
                .arg(opts.chain_id.to_string())
                .arg("--mnemonic")
                .arg(DEV_MNEMONIC)
                .arg("--accounts")
                .arg(DEV_ACCOUNTS.to_string());
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
            cmd.args(&opts.extra_args);
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));

            // Drain stderr so anvil can never block on a full pipe; keep it for error messages.
            let output = Arc::new(Mutex::new(Vec::new()));
            if let Some(mut stderr) = child.stderr.take() {
                let sink = Arc::clone(&output);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stderr.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let mut out = sink.lock().unwrap();
                        if out.len() < 64 * 1024 {
                            out.extend_from_slice(&buf[..n]);
                        }
                    }
                });
            }
            // stdout: the banner up to "Listening on <addr>", then one line per RPC call; read
            // the port from the former and drain the rest.
            let (port_tx, port_rx) = std::sync::mpsc::channel::<u16>();
            if let Some(stdout) = child.stdout.take() {
                std::thread::spawn(move || {
                    let mut port_tx = Some(port_tx);
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if let Some(rest) = line.trim().strip_prefix("Listening on ") {
                            if let Some(port) = rest.rsplit(':').next().and_then(|p| p.trim().parse::<u16>().ok()) {
                                if let Some(tx) = port_tx.take() {
                                    let _ = tx.send(port);
                                }
                            }
                        }
                    }
                });
            }

            let deadline = Instant::now() + opts.startup_timeout;
            let port = loop {
                match port_rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(port) => break Some(port),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                            break None;
                        }
                    }
                }
            };
            let Some(port) = port else {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(50));
                last_failure = format!("anvil did not report its port (exit status {status:?}): {}", String::from_utf8_lossy(&output.lock().unwrap()).trim());
                continue;
            };

            let chain = Chain::connect(&format!("http://127.0.0.1:{port}"), opts.chain_id);
            let mut anvil = Anvil {
                child: Some(child),
                chain,
                _cache: cache,
                port,
                wallets: dev_wallets().iter().map(|w| w.clone().with_chain_id(opts.chain_id)).collect(),
                output,
            };
            match anvil.wait_ready(opts.startup_timeout).await {
                Ok(()) => return anvil,
                Err(e) => {
                    last_failure = e;
                    anvil.stop();
                }
            }
        }
        panic!("anvil did not start: {last_failure}");
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                // Give the stderr thread a moment to collect the last words.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(format!("anvil exited with {status}: {}", self.output().trim()));
            }
            if let Ok(id) = self.chain.try_request::<_, U64>("eth_chainId", ()).await {
                if id.as_u64() != self.chain.chain_id {
                    return Err(format!("anvil reports chain id {id}, expected {}", self.chain.chain_id));
                }
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!("RPC on port {} not answering after {timeout:?}: {}", self.port, self.output()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The JSON-RPC URL, `http://127.0.0.1:<port>`.
    pub fn rpc_url(&self) -> String {
        self.chain.rpc_url()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of the anvil child.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The RPC handle (also reachable through `Deref`); clone it to keep it in other structs.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The 10 funded dev accounts (chain id set).
    pub fn accounts(&self) -> &[LocalWallet] {
        &self.wallets
    }

    /// Dev account `i` (0..10). Account 0 is the default deployer.
    pub fn wallet(&self, i: usize) -> LocalWallet {
        self.wallets.get(i).unwrap_or_else(|| panic!("anvil has {} dev accounts, no #{i}", self.wallets.len())).clone()
    }

    /// Address of dev account `i`.
    pub fn address(&self, i: usize) -> Address {
        self.wallet(i).address()
    }

    /// What anvil printed on stderr so far (capped at 64 KiB).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Kills and reaps anvil now (also done on drop). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Deref for Anvil {
    type Target = Chain;
    fn deref(&self) -> &Chain {
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
