//! The tables batches write, as generic rows (a key and column values), so one code path can
//! stage, journal, write and restore any of them; with the value codecs every file shares.

use std::collections::HashMap;

use ::scylla::statement::batch::{Batch as CqlBatch, BatchType};
use ::scylla::value::{CqlValue, Row};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::session::{be, Inner};
use crate::store::StoreError;

/// A column value of a journaled row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) enum Val {
    B(Vec<u8>),
    I(i64),
    T(i8),
    S(String),
}

impl Val {
    fn cql(&self) -> CqlValue {
        match self {
            Val::B(b) => CqlValue::Blob(b.clone()),
            Val::I(v) => CqlValue::BigInt(*v),
            Val::T(v) => CqlValue::TinyInt(*v),
            Val::S(s) => CqlValue::Text(s.clone()),
        }
    }
    fn from_cql(c: CqlValue) -> Option<Val> {
        match c {
            CqlValue::Blob(b) => Some(Val::B(b)),
            CqlValue::BigInt(v) => Some(Val::I(v)),
            CqlValue::TinyInt(v) => Some(Val::T(v)),
            CqlValue::Text(s) | CqlValue::Ascii(s) => Some(Val::S(s)),
            _ => None,
        }
    }
}

/// A row's key columns.
pub(super) type Key = Vec<Val>;
/// A row's value columns.
pub(super) type Vals = Vec<Option<Val>>;

/// A table batches write (and journal).
pub(super) struct Tbl {
    pub(super) name: &'static str,
    pub(super) keys: &'static [&'static str],
    pub(super) vals: &'static [&'static str],
}

/// The tables batches write, by id (the `T_` constants; the id is stored in the journal).
pub(super) const TABLES: [Tbl; 15] = [
    Tbl { name: "meta", keys: &["name"], vals: &["value"] },
    Tbl { name: "proposals", keys: &["proposal_id"], vals: &["status", "body"] },
    Tbl { name: "proposals_by_status", keys: &["status", "created_block", "proposal_id"], vals: &[] },
    Tbl { name: "proposals_by_proposer", keys: &["proposer", "created_block", "proposal_id"], vals: &[] },
    Tbl { name: "proposals_by_created", keys: &["bucket", "created_block", "proposal_id"], vals: &[] },
    Tbl { name: "proposal_history", keys: &["proposal_id", "block_number", "status"], vals: &["body"] },
    Tbl { name: "votes_by_proposal", keys: &["proposal_id", "block_number", "log_index"], vals: &["voter", "support", "day", "body"] },
    Tbl { name: "votes_by_proposal_voter", keys: &["proposal_id", "voter", "block_number", "log_index"], vals: &[] },
    Tbl { name: "votes_by_voter", keys: &["voter", "block_number", "log_index"], vals: &["proposal_id"] },
    Tbl { name: "voting_power", keys: &["account", "block_number"], vals: &["ts", "body"] },
    Tbl { name: "account_latest", keys: &["account"], vals: &["block_number", "body"] },
    Tbl { name: "timelock_operations", keys: &["id"], vals: &["body"] },
    Tbl { name: "outbox", keys: &["bucket", "event_key"], vals: &["body"] },
    Tbl { name: "outbox_by_account", keys: &["account", "event_key"], vals: &[] },
    Tbl { name: "participation_streaks", keys: &["voter"], vals: &["body"] },
];
pub(super) const T_META: u8 = 0;
pub(super) const T_PROPOSALS: u8 = 1;
pub(super) const T_BY_STATUS: u8 = 2;
pub(super) const T_BY_PROPOSER: u8 = 3;
pub(super) const T_BY_CREATED: u8 = 4;
pub(super) const T_HISTORY: u8 = 5;
pub(super) const T_VOTES: u8 = 6;
pub(super) const T_VOTES_BY_PV: u8 = 7;
pub(super) const T_VOTES_BY_VOTER: u8 = 8;
pub(super) const T_POWER: u8 = 9;
pub(super) const T_ACCOUNT: u8 = 10;
pub(super) const T_TIMELOCK: u8 = 11;
pub(super) const T_OUTBOX: u8 = 12;
pub(super) const T_OUTBOX_BY_ACCOUNT: u8 = 13;
pub(super) const T_STREAKS: u8 = 14;

/// Rows per batch and bytes per batch (well under Cassandra's default 50 KiB batch limit and
/// ScyllaDB's 1 MiB one).
const GROUP_ROWS: usize = 64;
const GROUP_BYTES: usize = 16 * 1024;

/// A store value as a column: bincode.
pub(super) fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("in-memory bincode serialization cannot fail for these types")
}

/// A bincode column of `table` as a value.
pub(super) fn dec<T: DeserializeOwned>(table: &'static str, b: &[u8]) -> Result<T, StoreError> {
    bincode::deserialize(b).map_err(|e| StoreError::Corrupt { table, message: e.to_string() })
}

/// A JSON column of `table` as a value.
/// JSON of a row; a value that cannot be written fails the commit rather than storing an empty row.
pub(super) fn json_enc<T: serde::Serialize + ?Sized>(table: &'static str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("{table}: value not serialisable as JSON: {e}")))
}

pub(super) fn json_dec<T: DeserializeOwned>(table: &'static str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt { table, message: e.to_string() })
}

/// A nullable bincode `body` column of `table` as a value.
pub(super) fn body<T: DeserializeOwned>(table: &'static str, v: Option<Vec<u8>>) -> Result<T, StoreError> {
    dec(table, &v.unwrap_or_default())
}

/// A block number or count as a CQL `bigint`.
pub(super) fn i(v: u64) -> i64 {
    v as i64
}

/// A blob value.
pub(super) fn b(v: &[u8]) -> Val {
    Val::B(v.to_vec())
}

/// A present column value.
pub(super) fn some(v: Val) -> Option<Val> {
    Some(v)
}

/// Column values as statement bind values.
pub(super) fn bind(vals: impl IntoIterator<Item = Option<Val>>) -> Vec<Option<CqlValue>> {
    vals.into_iter().map(|v| v.map(|v| v.cql())).collect()
}

/// Groups items by partition, in first-seen order, cut to at most [`GROUP_ROWS`] items and
/// about [`GROUP_BYTES`] bytes per group.
pub(super) fn group_by_partition<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut groups: Vec<(Vec<T>, usize)> = Vec::new();
    for item in items {
        let k = key(&item);
        let n = size(&item);
        let open = index.get(&k).copied().filter(|g| groups[*g].0.len() < GROUP_ROWS && groups[*g].1 + n <= GROUP_BYTES);
        match open {
            Some(g) => {
                groups[g].0.push(item);
                groups[g].1 += n;
            }
            None => {
                index.insert(k, groups.len());
                groups.push((vec![item], n));
            }
        }
    }
    groups.into_iter().map(|(g, _)| g).collect()
}

/// About how many bytes a row write sends.
pub(super) fn row_bytes(k: &Key, v: &Option<Vals>) -> usize {
    let size = |x: &Val| match x {
        Val::B(b) => b.len(),
        Val::S(s) => s.len(),
        _ => 8,
    };
    16 + k.iter().map(size).sum::<usize>() + v.as_ref().map_or(0, |v| v.iter().flatten().map(size).sum())
}

impl Inner {
    /// The value columns of a row (empty for a table without any), or `None` when it is absent.
    pub(super) async fn select_row(&self, t: u8, k: &Key) -> Result<Option<Vals>, StoreError> {
        let r = self.exec(&self.st.tables[t as usize].select, bind(k.iter().cloned().map(Some))).await?;
        let rows = r.into_rows_result().map_err(be)?;
        match rows.maybe_first_row::<Row>().map_err(be)? {
            None => Ok(None),
            Some(row) if TABLES[t as usize].vals.is_empty() => {
                let _ = row;
                Ok(Some(vec![]))
            }
            Some(row) => Ok(Some(row.columns.into_iter().map(|c| c.and_then(Val::from_cql)).collect())),
        }
    }

    /// Upserts a row (`Some`) or deletes it (`None`).
    pub(super) async fn write_row(&self, t: u8, k: &Key, v: &Option<Vals>) -> Result<(), StoreError> {
        let ts = &self.st.tables[t as usize];
        match v {
            Some(v) => self.exec(&ts.insert, bind(k.iter().cloned().map(Some).chain(v.iter().cloned()))).await?,
            None => self.exec(&ts.delete, bind(k.iter().cloned().map(Some))).await?,
        };
        Ok(())
    }

    /// Writes rows of one partition: one statement, or an unlogged batch of them.
    pub(super) async fn write_group(&self, rows: Vec<(u8, &Key, &Option<Vals>)>) -> Result<(), StoreError> {
        if let [(t, k, v)] = rows.as_slice() {
            return self.write_row(*t, k, v).await;
        }
        let mut batch = CqlBatch::new(BatchType::Unlogged);
        batch.set_is_idempotent(true);
        let mut values: Vec<Vec<Option<CqlValue>>> = Vec::with_capacity(rows.len());
        for (t, k, v) in &rows {
            let ts = &self.st.tables[*t as usize];
            match v {
                Some(v) => {
                    batch.append_statement(ts.insert.clone());
                    values.push(bind(k.iter().cloned().map(Some).chain(v.iter().cloned())));
                }
                None => {
                    batch.append_statement(ts.delete.clone());
                    values.push(bind(k.iter().cloned().map(Some)));
                }
            }
        }
        self.session.batch(&batch, &values).await.map_err(be)?;
        Ok(())
    }
}
