//! A real CQL engine for tests: `GOVFLOW_TEST_CQL` (host:port) when the test script started
//! one, else `scripts/cassandra.sh start` (a no-op when the node already runs). Each test gets
//! a keyspace of its own.

#![allow(dead_code, unreachable_pub)]

use std::sync::OnceLock;

use govflow::config::ScyllaConfig;

/// Contact point of the test engine.
pub fn nodes() -> String {
    static NODES: OnceLock<String> = OnceLock::new();
    NODES
        .get_or_init(|| {
            if let Ok(n) = std::env::var("GOVFLOW_TEST_CQL") {
                return n;
            }
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cassandra.sh");
            let st = std::process::Command::new(script).arg("start").status().expect("running scripts/cassandra.sh start");
            assert!(st.success(), "scripts/cassandra.sh start failed");
            format!("127.0.0.1:{}", std::env::var("GOVFLOW_CQL_PORT").unwrap_or_else(|_| "9042".into()))
        })
        .clone()
}

/// A keyspace name no other test uses.
pub fn fresh_keyspace(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple().to_string().get(..12).unwrap_or("x"))
}

/// Store settings for the test engine (single node: consistency ONE is LOCAL_QUORUM there).
pub fn config(keyspace: &str) -> ScyllaConfig {
    ScyllaConfig { nodes: nodes(), keyspace: keyspace.to_string(), ..ScyllaConfig::default() }
}

/// Runs CQL statements directly (to set up crash states and drift the store cannot produce on
/// its own).
pub fn raw(statements: &[String]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = scylla::client::session_builder::SessionBuilder::new().known_node(nodes()).build().await.unwrap();
        for st in statements {
            s.query_unpaged(st.clone(), ()).await.unwrap_or_else(|e| panic!("{st}: {e}"));
        }
    });
}

/// Drops a keyspace when the test ends.
pub struct DropKeyspace(pub String);

impl Drop for DropKeyspace {
    fn drop(&mut self) {
        if std::env::var("GOVFLOW_KEEP_KEYSPACES").is_err() {
            let ks = self.0.clone();
            let _ = std::thread::spawn(move || raw(&[format!("DROP KEYSPACE IF EXISTS {ks}")])).join();
        }
    }
}
