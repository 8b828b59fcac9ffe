//! Prepared statements: every CQL statement the backend sends, prepared once at connect, with
//! its idempotence (which lets the driver retry and speculate it).

use ::scylla::client::session::Session;
use ::scylla::statement::prepared::PreparedStatement;

use super::tables::{Tbl, TABLES};
use crate::store::StoreError;

/// Prepared statements of one table.
pub(super) struct TblSt {
    pub(super) insert: PreparedStatement,
    pub(super) delete: PreparedStatement,
    pub(super) select: PreparedStatement,
}

/// Every prepared statement.
pub(super) struct Sts {
    pub(super) tables: Vec<TblSt>,
    pub(super) vote_insert_lwt: PreparedStatement,
    pub(super) vote_delete_lwt: PreparedStatement,
    pub(super) cursor_get: PreparedStatement,
    pub(super) cursor_pending: PreparedStatement,
    pub(super) cursor_set: PreparedStatement,
    pub(super) block_put: PreparedStatement,
    pub(super) block_get: PreparedStatement,
    pub(super) blocks_all: PreparedStatement,
    pub(super) blocks_delete_from: PreparedStatement,
    pub(super) blocks_delete_below: PreparedStatement,
    pub(super) batches_all: PreparedStatement,
    pub(super) batch_put: PreparedStatement,
    pub(super) batch_delete: PreparedStatement,
    pub(super) undo_put: PreparedStatement,
    pub(super) undo_get: PreparedStatement,
    pub(super) undo_delete: PreparedStatement,
    pub(super) by_status: PreparedStatement,
    pub(super) by_status_count: PreparedStatement,
    pub(super) by_proposer: PreparedStatement,
    pub(super) by_created: PreparedStatement,
    pub(super) history: PreparedStatement,
    pub(super) votes_asc: PreparedStatement,
    pub(super) votes_desc: PreparedStatement,
    pub(super) votes_all: PreparedStatement,
    pub(super) votes_scan: PreparedStatement,
    pub(super) vote_of_voter: PreparedStatement,
    pub(super) voter_asc: PreparedStatement,
    pub(super) voter_desc: PreparedStatement,
    pub(super) power_at_block: PreparedStatement,
    pub(super) power_desc: PreparedStatement,
    pub(super) accounts_all: PreparedStatement,
    pub(super) accounts_count: PreparedStatement,
    pub(super) outbox_range: PreparedStatement,
    pub(super) outbox_by_account: PreparedStatement,
    pub(super) published_put: PreparedStatement,
    pub(super) published_get: PreparedStatement,
    pub(super) published_after: PreparedStatement,
    pub(super) published_delete: PreparedStatement,
    pub(super) feed_put: PreparedStatement,
    pub(super) feed_from: PreparedStatement,
    pub(super) feed_state_get: PreparedStatement,
    pub(super) feed_state_set: PreparedStatement,
    pub(super) pc_add: PreparedStatement,
    pub(super) pc_get: PreparedStatement,
    pub(super) pc_all: PreparedStatement,
    pub(super) vc_add: PreparedStatement,
    pub(super) vc_get: PreparedStatement,
    pub(super) vc_all: PreparedStatement,
    pub(super) dc_add: PreparedStatement,
    pub(super) dc_all: PreparedStatement,
    pub(super) gc_add: PreparedStatement,
    pub(super) gc_all: PreparedStatement,
}

/// Prepares one statement; only `idempotent` ones may be retried or speculated by the driver.
async fn prepare(s: &Session, cql: String, idempotent: bool) -> Result<PreparedStatement, StoreError> {
    let mut st = s.prepare(cql.clone()).await.map_err(|e| StoreError::Backend(format!("preparing {cql}: {e}")))?;
    st.set_is_idempotent(idempotent);
    Ok(st)
}

impl TblSt {
    /// The upsert, delete and select by key of one table batches write.
    async fn prepare(s: &Session, ks: &str, t: &Tbl) -> Result<TblSt, StoreError> {
        let cols: Vec<&str> = t.keys.iter().chain(t.vals.iter()).copied().collect();
        let marks = vec!["?"; cols.len()].join(", ");
        let wh = t.keys.iter().map(|k| format!("{k} = ?")).collect::<Vec<_>>().join(" AND ");
        let sel_cols = if t.vals.is_empty() { t.keys.join(", ") } else { t.vals.join(", ") };
        Ok(TblSt {
            insert: prepare(s, format!("INSERT INTO {ks}.{} ({}) VALUES ({marks})", t.name, cols.join(", ")), true).await?,
            delete: prepare(s, format!("DELETE FROM {ks}.{} WHERE {wh}", t.name), true).await?,
            select: prepare(s, format!("SELECT {sel_cols} FROM {ks}.{} WHERE {wh}", t.name), true).await?,
        })
    }
}

impl Sts {
    /// Prepares every statement in keyspace `ks`.
    pub(super) async fn prepare(s: &Session, ks: &str) -> Result<Sts, StoreError> {
        let p = |cql: String, idempotent: bool| prepare(s, cql, idempotent);
        let mut tables = Vec::new();
        for t in &TABLES {
            tables.push(TblSt::prepare(s, ks, t).await?);
        }
        Ok(Sts {
            tables,
            vote_insert_lwt: p(format!("INSERT INTO {ks}.votes_by_proposal (proposal_id, block_number, log_index, voter, support, day, body) VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            vote_delete_lwt: p(format!("DELETE FROM {ks}.votes_by_proposal WHERE proposal_id = ? AND block_number = ? AND log_index = ? IF EXISTS"), false).await?,
            cursor_get: p(format!("SELECT block_number, block_hash, events, first_block, pending FROM {ks}.listener_cursors WHERE name = ?"), true).await?,
            cursor_pending: p(format!("UPDATE {ks}.listener_cursors SET pending = ? WHERE name = ?"), true).await?,
            cursor_set: p(format!("UPDATE {ks}.listener_cursors SET block_number = ?, block_hash = ?, events = ?, first_block = ?, pending = null WHERE name = ?"), true).await?,
            block_put: p(format!("INSERT INTO {ks}.blocks (bucket, number, hash, parent_hash, ts) VALUES (0, ?, ?, ?, ?)"), true).await?,
            block_get: p(format!("SELECT number, hash, parent_hash, ts FROM {ks}.blocks WHERE bucket = 0 AND number = ?"), true).await?,
            blocks_all: p(format!("SELECT number, hash, parent_hash, ts FROM {ks}.blocks WHERE bucket = 0"), true).await?,
            blocks_delete_from: p(format!("DELETE FROM {ks}.blocks WHERE bucket = 0 AND number >= ?"), true).await?,
            blocks_delete_below: p(format!("DELETE FROM {ks}.blocks WHERE bucket = 0 AND number < ?"), true).await?,
            batches_all: p(format!("SELECT from_block, to_block, events_before FROM {ks}.reversible_batches WHERE bucket = 0"), true).await?,
            batch_put: p(format!("INSERT INTO {ks}.reversible_batches (bucket, from_block, to_block, events_before) VALUES (0, ?, ?, ?)"), true).await?,
            batch_delete: p(format!("DELETE FROM {ks}.reversible_batches WHERE bucket = 0 AND from_block = ?"), true).await?,
            undo_put: p(format!("INSERT INTO {ks}.undo_log (batch_from, seq, tbl, row_key, old_value) VALUES (?, ?, ?, ?, ?)"), true).await?,
            undo_get: p(format!("SELECT seq, tbl, row_key, old_value FROM {ks}.undo_log WHERE batch_from = ?"), true).await?,
            undo_delete: p(format!("DELETE FROM {ks}.undo_log WHERE batch_from = ?"), true).await?,
            by_status: p(format!("SELECT proposal_id FROM {ks}.proposals_by_status WHERE status = ?"), true).await?,
            by_status_count: p(format!("SELECT COUNT(*) FROM {ks}.proposals_by_status WHERE status = ?"), true).await?,
            by_proposer: p(format!("SELECT proposal_id FROM {ks}.proposals_by_proposer WHERE proposer = ?"), true).await?,
            by_created: p(format!("SELECT proposal_id FROM {ks}.proposals_by_created WHERE bucket = 0"), true).await?,
            history: p(format!("SELECT body FROM {ks}.proposal_history WHERE proposal_id = ?"), true).await?,
            votes_asc: p(format!("SELECT block_number, log_index, support, body FROM {ks}.votes_by_proposal WHERE proposal_id = ? AND (block_number, log_index) > (?, ?)"), true).await?,
            votes_desc: p(format!("SELECT block_number, log_index, support, body FROM {ks}.votes_by_proposal WHERE proposal_id = ? AND (block_number, log_index) < (?, ?) ORDER BY block_number DESC, log_index DESC"), true).await?,
            votes_all: p(format!("SELECT block_number, log_index, voter, support, day FROM {ks}.votes_by_proposal WHERE proposal_id = ?"), true).await?,
            votes_scan: p(format!("SELECT proposal_id, voter, support, day FROM {ks}.votes_by_proposal"), true).await?,
            vote_of_voter: p(format!("SELECT block_number, log_index FROM {ks}.votes_by_proposal_voter WHERE proposal_id = ? AND voter = ? ORDER BY voter DESC, block_number DESC, log_index DESC LIMIT 1"), true).await?,
            voter_asc: p(format!("SELECT block_number, log_index, proposal_id FROM {ks}.votes_by_voter WHERE voter = ? AND (block_number, log_index) > (?, ?) LIMIT ?"), true).await?,
            voter_desc: p(format!("SELECT block_number, log_index, proposal_id FROM {ks}.votes_by_voter WHERE voter = ? AND (block_number, log_index) < (?, ?) ORDER BY block_number DESC, log_index DESC LIMIT ?"), true).await?,
            power_at_block: p(format!("SELECT body FROM {ks}.voting_power WHERE account = ? AND block_number <= ? ORDER BY block_number DESC LIMIT 1"), true).await?,
            power_desc: p(format!("SELECT ts, body FROM {ks}.voting_power WHERE account = ? ORDER BY block_number DESC"), true).await?,
            accounts_all: p(format!("SELECT account, body FROM {ks}.account_latest"), true).await?,
            accounts_count: p(format!("SELECT account FROM {ks}.account_latest"), true).await?,
            outbox_range: p(format!("SELECT event_key, body FROM {ks}.outbox WHERE bucket = ? AND event_key > ? AND event_key < ?"), true).await?,
            outbox_by_account: p(format!("SELECT event_key FROM {ks}.outbox_by_account WHERE account = ?"), true).await?,
            published_put: p(format!("INSERT INTO {ks}.published_events (bucket, event_key, body) VALUES (?, ?, ?)"), true).await?,
            published_get: p(format!("SELECT body FROM {ks}.published_events WHERE bucket = ? AND event_key = ?"), true).await?,
            published_after: p(format!("SELECT event_key, body FROM {ks}.published_events WHERE bucket = ? AND event_key >= ?"), true).await?,
            published_delete: p(format!("DELETE FROM {ks}.published_events WHERE bucket = ? AND event_key = ?"), true).await?,
            feed_put: p(format!("INSERT INTO {ks}.feed (bucket, seq, body) VALUES (?, ?, ?)"), true).await?,
            feed_from: p(format!("SELECT seq, body FROM {ks}.feed WHERE bucket = ? AND seq > ? LIMIT ?"), true).await?,
            feed_state_get: p(format!("SELECT seq, published_through FROM {ks}.feed_state WHERE name = ?"), true).await?,
            feed_state_set: p(format!("INSERT INTO {ks}.feed_state (name, seq, published_through) VALUES (?, ?, ?)"), true).await?,
            pc_add: p(format!("UPDATE {ks}.proposal_vote_counters SET votes = votes + ?, against_votes = against_votes + ?, for_votes = for_votes + ?, abstain_votes = abstain_votes + ?, other_votes = other_votes + ? WHERE proposal_id = ?"), false).await?,
            pc_get: p(format!("SELECT votes, against_votes, for_votes, abstain_votes, other_votes FROM {ks}.proposal_vote_counters WHERE proposal_id = ?"), true).await?,
            pc_all: p(format!("SELECT proposal_id, votes, against_votes, for_votes, abstain_votes, other_votes FROM {ks}.proposal_vote_counters"), true).await?,
            vc_add: p(format!("UPDATE {ks}.voter_vote_counters SET votes = votes + ? WHERE voter = ?"), false).await?,
            vc_get: p(format!("SELECT votes FROM {ks}.voter_vote_counters WHERE voter = ?"), true).await?,
            vc_all: p(format!("SELECT voter, votes FROM {ks}.voter_vote_counters"), true).await?,
            dc_add: p(format!("UPDATE {ks}.daily_vote_counters SET votes = votes + ? WHERE bucket = 0 AND day = ?"), false).await?,
            dc_all: p(format!("SELECT day, votes FROM {ks}.daily_vote_counters WHERE bucket = 0"), true).await?,
            gc_add: p(format!("UPDATE {ks}.global_counters SET value = value + ? WHERE name = ?"), false).await?,
            gc_all: p(format!("SELECT name, value FROM {ks}.global_counters"), true).await?,
        })
    }
}
