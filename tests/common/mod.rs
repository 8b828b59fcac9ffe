//! Test helpers that run the real `govflow` binary and put a fault-injecting JSON-RPC proxy in
//! front of the real chain node.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use warp::Filter;

/// Faults the proxy injects.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Refuse `eth_getLogs` over more blocks than this.
    pub max_log_range: Option<u64>,
    /// Refuse `eth_getLogs` answers with more logs than this.
    pub max_log_results: Option<usize>,
    /// Answer one request in this many with HTTP 503.
    pub fail_one_in: Option<u64>,
}

/// A JSON-RPC proxy on 127.0.0.1 that forwards to `upstream` and injects faults.
pub struct RpcProxy {
    /// Proxy URL.
    pub url: String,
    /// Requests refused as too large.
    pub refused: Arc<AtomicU64>,
    /// Requests failed with 503.
    pub failed: Arc<AtomicU64>,
    /// Requests forwarded.
    pub forwarded: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RpcProxy {
    /// Starts the proxy on its own runtime thread.
    pub fn start(upstream: &str, faults: Faults) -> RpcProxy {
        let refused = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let counter = Arc::new(AtomicU64::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let upstream = upstream.to_string();
        let (r, f, fw) = (refused.clone(), failed.clone(), forwarded.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let client = reqwest::Client::new();
                let route = warp::post().and(warp::body::bytes()).and_then(move |body: bytes::Bytes| {
                    let (client, upstream, faults) = (client.clone(), upstream.clone(), faults.clone());
                    let (r, f, fw, counter) = (r.clone(), f.clone(), fw.clone(), counter.clone());
                    async move {
                        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let id = req.get("id").cloned().unwrap_or(Value::Null);
                        let method = req.get("method").and_then(Value::as_str).unwrap_or("").to_string();
                        if let Some(k) = faults.fail_one_in {
                            if n % k == 0 {
                                f.fetch_add(1, Ordering::Relaxed);
                                let resp = warp::http::Response::builder().status(503).body("upstream unavailable".to_string()).unwrap();
                                return Ok::<_, warp::Rejection>(resp);
                            }
                        }
                        if method == "eth_getLogs" {
                            if let Some(max) = faults.max_log_range {
                                let p = &req["params"][0];
                                let from = hexnum(&p["fromBlock"]);
                                let to = hexnum(&p["toBlock"]);
                                if to >= from && to - from + 1 > max {
                                    r.fetch_add(1, Ordering::Relaxed);
                                    let e = serde_json::json!({"jsonrpc":"2.0","id":id,"error":{"code":-32005,"message":format!("query exceeds max block range {max}")}});
                                    return Ok(warp::http::Response::builder().status(200).header("content-type", "application/json").body(e.to_string()).unwrap());
                                }
                            }
                        }
                        fw.fetch_add(1, Ordering::Relaxed);
                        let up = client.post(&upstream).header("content-type", "application/json").body(body.to_vec()).send().await;
                        let text = match up {
                            Ok(resp) => resp.text().await.unwrap_or_default(),
                            Err(e) => {
                                let resp = warp::http::Response::builder().status(502).body(e.to_string()).unwrap();
                                return Ok(resp);
                            }
                        };
                        if method == "eth_getLogs" {
                            if let Some(max) = faults.max_log_results {
                                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                                if v["result"].as_array().is_some_and(|a| a.len() > max) {
                                    r.fetch_add(1, Ordering::Relaxed);
                                    let e = serde_json::json!({"jsonrpc":"2.0","id":id,"error":{"code":-32005,"message":format!("query returned more than {max} results")}});
                                    return Ok(warp::http::Response::builder().status(200).header("content-type", "application/json").body(e.to_string()).unwrap());
                                }
                            }
                        }
                        Ok(warp::http::Response::builder().status(200).header("content-type", "application/json").body(text).unwrap())
                    }
                });
                let (addr, server) = warp::serve(route).bind_with_graceful_shutdown(([127, 0, 0, 1], 0), async {
                    let _ = rx.await;
                });
                addr_tx.send(addr).unwrap();
                server.await;
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("proxy did not start");
        RpcProxy { url: format!("http://{addr}"), refused, failed, forwarded, shutdown: Some(tx), thread: Some(thread) }
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hexnum(v: &Value) -> u64 {
    v.as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()).unwrap_or(0)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `govflow run` process.
pub struct Govflow {
    child: Option<Child>,
    /// API base URL.
    pub base: String,
    /// Data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
}

/// Options for a govflow process.
#[derive(Clone, Debug)]
pub struct GovflowOpts {
    /// RPC URL.
    pub rpc_url: String,
    /// Governor address.
    pub governor: String,
    /// Confirmations.
    pub confirmations: u64,
    /// Start block (None: discovered).
    pub start_block: Option<u64>,
    /// Extra `GOVFLOW_*` environment.
    pub env: Vec<(String, String)>,
}

impl Govflow {
    /// Starts govflow on a free port with `data_dir`.
    pub fn start(opts: &GovflowOpts, data_dir: &Path) -> Govflow {
        let port = free_port();
        let log = data_dir.with_extension(format!("{port}.log"));
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_govflow"));
        cmd.arg("run")
            .arg("--rpc-url")
            .arg(&opts.rpc_url)
            .arg("--governor")
            .arg(&opts.governor)
            .arg("--confirmations")
            .arg(opts.confirmations.to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .env("GOVFLOW_CHAIN_POLL_INTERVAL_MS", "100")
            .env("GOVFLOW_CHAIN_PROGRESS_INTERVAL_S", "1")
            .env("GOVFLOW_LOG", "info")
            .stdout(Stdio::null())
            .stderr(logf);
        if let Some(b) = opts.start_block {
            cmd.arg("--start-block").arg(b.to_string());
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn govflow");
        Govflow { child: Some(child), base: format!("http://127.0.0.1:{port}"), data_dir: data_dir.to_path_buf(), log }
    }

    /// The process log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a JSON document; panics on transport errors.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("{}{}", self.base, path)).await.unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log()));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// GET expecting 200.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, 200, "GET {path} -> {s}: {v}");
        v
    }

    /// Waits until the indexer has committed `block` (and the API answers).
    pub async fn wait_indexed(&mut self, block: u64, timeout: Duration) {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("govflow exited with {st}\n{}", self.log());
            }
            if let Ok(r) = reqwest::get(format!("{}/v1/status", self.base)).await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["indexedBlock"].as_u64().is_some_and(|b| b >= block) {
                        return;
                    }
                }
            }
            assert!(t.elapsed() < timeout, "govflow did not index block {block} in {timeout:?}\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fetches every page of a list endpoint.
    pub async fn all_pages(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = path.to_string();
        loop {
            let v = self.get_ok(&url).await;
            out.extend(v["items"].as_array().cloned().unwrap_or_default());
            match v["nextCursor"].as_str() {
                Some(c) => url = format!("{path}{sep}cursor={c}"),
                None => return out,
            }
        }
    }

    /// Kills the process with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_sigterm(c.id());
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM and asserts a clean shutdown: exit code 0 within 30 s
    /// and no panic in its log.
    pub fn stop_clean(&mut self, name: &str) {
        let Some(mut c) = self.child.take() else { panic!("{name} is not running") };
        unsafe_sigterm(c.id());
        let t = Instant::now();
        let status = loop {
            if let Some(st) = c.try_wait().ok().flatten() {
                break st;
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                let _ = c.wait();
                panic!("{name} did not stop within 30 s of SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self.log();
        assert!(status.success(), "{name} exited with {status} after SIGTERM\n{log}");
        assert!(!log.contains("panicked"), "{name} panicked during its life or shutdown\n{log}");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

impl Drop for Govflow {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every message of a JetStream stream, in order: (subject, Nats-Msg-Id, payload).
pub async fn stream_messages(js: &async_nats::jetstream::Context, stream: &str) -> Vec<(String, String, Value)> {
    use futures::StreamExt;
    let s = js.get_stream(stream).await.unwrap_or_else(|e| panic!("stream {stream}: {e}"));
    let total = s.get_info().await.unwrap().state.messages;
    let mut out = Vec::new();
    if total == 0 {
        return out;
    }
    let consumer = s.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    while (out.len() as u64) < total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next()).await.expect("stream read timed out").unwrap().unwrap();
        let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.to_string()).unwrap_or_default();
        out.push((m.subject.to_string(), id, serde_json::from_slice(&m.payload).unwrap()));
    }
    out
}
