//! `govflow migrate` and `govflow reconcile` against a real CQL engine, and the errors a user
//! sees when the store is not ready.

mod cql;

use std::process::{Command, Output};

fn govflow(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_govflow"));
    cmd.args(args).env("GOVFLOW_LOG", "warn").env_remove("GOVFLOW_STORE_BACKEND");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn migrate_is_idempotent_and_reconcile_reports() {
    let ks = cql::fresh_keyspace("cli");
    let _drop = cql::DropKeyspace(ks.clone());
    let env = [
        ("GOVFLOW_STORE_BACKEND", "scylla".to_string()),
        ("GOVFLOW_SCYLLA_NODES", cql::nodes()),
        ("GOVFLOW_SCYLLA_KEYSPACE", ks.clone()),
        ("GOVFLOW_SCYLLA_PASSWORD", "s3cret-never-printed".to_string()),
        ("GOVFLOW_SCYLLA_USERNAME", "cassandra".to_string()),
    ];
    // Password authentication is off on the test node: the driver connects without using it.
    let first = govflow(&["migrate"], &env);
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains(&format!("keyspace {ks}: migration 0001_initial applied")), "{}", text(&first));
    let again = govflow(&["migrate"], &env);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("0001_initial already applied"), "{}", text(&again));
    let rec = govflow(&["reconcile"], &env);
    assert!(rec.status.success(), "{}", text(&rec));
    assert!(text(&rec).contains("0 vote records scanned") && text(&rec).contains("0 corrected"), "{}", text(&rec));
    let check = govflow(&["check-config", "--governor", "0x5FbDB2315678afecb367f032d93F642f64180aa3"], &env);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("<redacted>") && !text(&check).contains("s3cret"), "{}", text(&check));
    for o in [&first, &again, &rec] {
        assert!(!text(o).contains("s3cret"), "the password never reaches the output");
    }
}

#[test]
fn a_missing_schema_or_backend_is_a_clear_error() {
    let ks = cql::fresh_keyspace("none");
    let env = [("GOVFLOW_STORE_BACKEND", "scylla".to_string()), ("GOVFLOW_SCYLLA_NODES", cql::nodes()), ("GOVFLOW_SCYLLA_KEYSPACE", ks.clone())];
    let rec = govflow(&["reconcile"], &env);
    assert_eq!(rec.status.code(), Some(1));
    assert!(text(&rec).contains(&format!("keyspace {ks} has no govflow schema")) && text(&rec).contains("govflow migrate"), "{}", text(&rec));
    let emb = govflow(&["migrate"], &[]);
    assert_eq!(emb.status.code(), Some(2));
    assert!(text(&emb).contains("apply to the scylla backend"), "{}", text(&emb));
    let down = govflow(
        &["migrate"],
        &[("GOVFLOW_STORE_BACKEND", "scylla".into()), ("GOVFLOW_SCYLLA_NODES", "127.0.0.1:1".into()), ("GOVFLOW_SCYLLA_CONNECT_TIMEOUT_MS", "500".into())],
    );
    assert_eq!(down.status.code(), Some(1));
    assert!(text(&down).contains("cannot connect to the CQL nodes 127.0.0.1:1 (scylla.nodes)"), "{}", text(&down));
}
