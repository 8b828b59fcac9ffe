//! Versioned CQL migrations for the ScyllaDB store (`schema/cql/NNNN_name.cql`).
//!
//! `govflow migrate` (and start-up with `scylla.migrate_on_start`) creates the keyspace with the
//! configured replication, then applies every migration not yet recorded in
//! `schema_migrations`, in version order. Every statement is idempotent (`IF NOT EXISTS`), a
//! migration is recorded only after all its statements applied, and a recorded migration whose
//! file changed since is refused (a migration is never edited once released: add the next one).
//! Instances started side by side serialize on a lease row (`schema_lock`, a lightweight
//! transaction with a TTL), so two of them never issue concurrent schema changes.

use std::time::{Duration, Instant};

use ::scylla::client::session::Session;
use ::scylla::statement::Statement;

use super::StoreError;

/// One migration file.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Version (the file's number).
    pub version: i32,
    /// Name (the rest of the file name).
    pub name: &'static str,
    /// CQL text with `{{keyspace}}` placeholders.
    pub cql: &'static str,
}

/// Every migration, in version order.
pub const MIGRATIONS: &[Migration] = &[Migration { version: 1, name: "initial", cql: include_str!("../../schema/cql/0001_initial.cql") }];

/// The statements of a migration for `keyspace`: comments dropped, split at `;` ending a line.
pub fn statements(cql: &str, keyspace: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in cql.lines() {
        let line = match line.find("--") {
            Some(i) => &line[..i],
            None => line,
        };
        if line.trim().is_empty() {
            continue;
        }
        cur.push_str(line.trim_end());
        cur.push('\n');
        if line.trim_end().ends_with(';') {
            let st = cur.trim().trim_end_matches(';').replace("{{keyspace}}", keyspace);
            out.push(st);
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().replace("{{keyspace}}", keyspace));
    }
    out
}

/// Checksum of a migration's text (keccak-256, hex).
pub fn checksum(cql: &str) -> String {
    use tiny_keccak::{Hasher, Keccak};
    let mut k = Keccak::v256();
    k.update(cql.as_bytes());
    let mut out = [0u8; 32];
    k.finalize(&mut out);
    hex::encode(out)
}

/// What `migrate` did with one migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Version.
    pub version: i32,
    /// Name.
    pub name: &'static str,
    /// True when applied by this call, false when it was already there.
    pub now: bool,
}

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

async fn run(session: &Session, cql: &str) -> Result<(), StoreError> {
    session.query_unpaged(Statement::new(cql.to_string()), ()).await.map_err(|e| StoreError::Backend(format!("{e} (in: {cql})")))?;
    Ok(())
}

/// Creates the keyspace and applies pending migrations; returns every migration's state.
pub async fn migrate(session: &Session, keyspace: &str, replication: &str, keyspace_options: &str) -> Result<Vec<Applied>, StoreError> {
    run(session, &format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication} {keyspace_options}")).await?;
    run(session, &format!("CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations (version int PRIMARY KEY, name text, checksum text, applied_at_ms bigint)"))
        .await?;
    run(session, &format!("CREATE TABLE IF NOT EXISTS {keyspace}.schema_lock (name text PRIMARY KEY, owner text)")).await?;
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4());
    let lock =
        session.prepare(format!("INSERT INTO {keyspace}.schema_lock (name, owner) VALUES ('migrate', ?) IF NOT EXISTS USING TTL 120")).await.map_err(be)?;
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let r = session.execute_unpaged(&lock, (owner.as_str(),)).await.map_err(be)?;
        let applied = r.into_rows_result().map_err(be)?.first_row::<scylla::value::Row>().map_err(be)?;
        if matches!(applied.columns.first(), Some(Some(scylla::value::CqlValue::Boolean(true)))) {
            break;
        }
        if Instant::now() > deadline {
            return Err(StoreError::Backend(format!(
                "another instance holds the schema lock of keyspace {keyspace} (row 'migrate' of {keyspace}.schema_lock; it expires by itself after 120 s)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let result = apply_all(session, keyspace).await;
    let unlock = session.prepare(format!("DELETE FROM {keyspace}.schema_lock WHERE name = 'migrate' IF owner = ?")).await.map_err(be);
    if let Ok(unlock) = unlock {
        let _ = session.execute_unpaged(&unlock, (owner.as_str(),)).await;
    }
    result
}

async fn apply_all(session: &Session, keyspace: &str) -> Result<Vec<Applied>, StoreError> {
    let rows = session
        .query_unpaged(format!("SELECT version, name, checksum FROM {keyspace}.schema_migrations"), ())
        .await
        .map_err(be)?
        .into_rows_result()
        .map_err(be)?;
    let mut done = std::collections::BTreeMap::new();
    for r in rows.rows::<(i32, Option<String>, Option<String>)>().map_err(be)? {
        let (v, n, c) = r.map_err(be)?;
        done.insert(v, (n.unwrap_or_default(), c.unwrap_or_default()));
    }
    let record =
        session.prepare(format!("INSERT INTO {keyspace}.schema_migrations (version, name, checksum, applied_at_ms) VALUES (?, ?, ?, ?)")).await.map_err(be)?;
    let mut out = Vec::new();
    for m in MIGRATIONS {
        let sum = checksum(m.cql);
        if let Some((_, stored)) = done.get(&m.version) {
            if *stored != sum {
                return Err(StoreError::Backend(format!(
                    "migration {:04}_{} was changed after it was applied to keyspace {keyspace} (checksum {stored}, file {sum}); add a new migration instead",
                    m.version, m.name
                )));
            }
            out.push(Applied { version: m.version, name: m.name, now: false });
            continue;
        }
        for st in statements(m.cql, keyspace) {
            run(session, &st).await?;
        }
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        session.execute_unpaged(&record, (m.version, m.name, sum.as_str(), now_ms)).await.map_err(be)?;
        tracing::info!(target: "store", version = m.version, name = m.name, keyspace, "schema migration applied");
        out.push(Applied { version: m.version, name: m.name, now: true });
    }
    if let Some(v) = done.keys().next_back() {
        if MIGRATIONS.iter().all(|m| m.version < *v) {
            return Err(StoreError::Backend(format!(
                "keyspace {keyspace} has schema version {v}, newer than this govflow knows ({}); upgrade govflow",
                MIGRATIONS.last().map_or(0, |m| m.version)
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_and_substitute() {
        let s = statements(MIGRATIONS[0].cql, "ks1");
        assert!(s.len() > 20, "{} statements", s.len());
        assert!(s.iter().all(|st| st.starts_with("CREATE TABLE IF NOT EXISTS ks1.")), "{s:?}");
        assert!(s.iter().all(|st| !st.contains("--") && !st.ends_with(';')));
        let s = statements("-- c\nCREATE TABLE {{keyspace}}.t (a int PRIMARY KEY); -- trailing\n", "k");
        assert_eq!(s, vec!["CREATE TABLE k.t (a int PRIMARY KEY)".to_string()]);
    }

    #[test]
    fn versions_are_increasing() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(checksum("a"), checksum("a"));
        assert_ne!(checksum("a"), checksum("b"));
    }
}
