//! Undoing journaled batches: the rollback after a reorg, and the recovery of a commit that was
//! interrupted.
//!
//! ## Rollback
//! [`Store::rollback`](crate::store::Store::rollback) replays the journals of the undone
//! batches newest first (restoring old values, deleting rows that did not exist, decrementing
//! the counters of vote records it deletes), retracts published events, then moves the cursor
//! back. It is idempotent: when interrupted it is simply run again, and the reconciliation that
//! follows any interrupted operation corrects the counters.

use std::collections::HashMap;

use super::counters::Deltas;
use super::cursor::PENDING_ROLLBACK;
use super::session::Inner;
use super::tables::{bind, dec, i, Key, Val, Vals, TABLES, T_ACCOUNT, T_VOTES};
use crate::store::{Cursor, StoreError};

/// An `undo_log` row: sequence, table, key, old value.
type UndoRow = (i32, Option<i8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// What a rollback undoes and where it leaves the cursor.
struct RollbackPlan {
    /// First blocks of the batches to undo, newest first.
    undone: Vec<u64>,
    /// The last block kept.
    target: u64,
    /// The cursor after the rollback (`None` when every batch is undone).
    cursor: Option<Cursor>,
    /// The event count before the earliest undone batch.
    events_before: u64,
}

impl Inner {
    /// Undoes what an interrupted commit wrote: the journals of batches past the cursor.
    pub(super) async fn undo_stale(&self, cursor: Option<u64>) -> Result<(), StoreError> {
        let floor = cursor.map_or(0, |c| c + 1);
        let batches: Vec<(i64, Option<i64>, Option<i64>)> = self.all(&self.st.batches_all, ()).await?;
        let mut froms: Vec<u64> = batches.iter().map(|b| b.0 as u64).filter(|f| *f >= floor).collect();
        if !froms.contains(&floor) {
            froms.push(floor);
        }
        froms.sort_unstable();
        for from in froms.into_iter().rev() {
            self.undo_batch(from).await?;
            self.exec(&self.st.batch_delete, (i(from),)).await?;
        }
        Ok(())
    }

    /// Restores the journal of the batch starting at `from` (newest record first), then drops it.
    async fn undo_batch(&self, from: u64) -> Result<(), StoreError> {
        let mut recs: Vec<UndoRow> = self.all(&self.st.undo_get, (i(from),)).await?;
        recs.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut d = Deltas::default();
        let mut touched_voters: HashMap<Vec<u8>, i64> = HashMap::new();
        for (_, t, k, old) in recs {
            let t = t.unwrap_or(-1);
            if t < 0 || t as usize >= TABLES.len() {
                return Err(StoreError::Corrupt { table: "undo_log", message: format!("table id {t}") });
            }
            let t = t as u8;
            let k: Key = dec("undo_log", &k.unwrap_or_default())?;
            let old: Option<Vals> = old.map(|o| dec("undo_log", &o)).transpose()?;
            match (t, &old) {
                (T_VOTES, None) => {
                    let Some(cur) = self.select_row(T_VOTES, &k).await? else { continue };
                    let r = self.exec(&self.st.vote_delete_lwt, bind(k.iter().cloned().map(Some))).await?;
                    if Self::applied(r)? {
                        if let (Some(Val::B(pid)), Some(Some(Val::B(voter))), Some(Some(Val::T(support))), Some(Some(Val::S(day)))) =
                            (k.first(), cur.first(), cur.get(1), cur.get(2))
                        {
                            d.vote(pid, voter, *support, day, -1);
                            *touched_voters.entry(voter.clone()).or_default() += 1;
                        }
                    }
                }
                (T_ACCOUNT, None) => {
                    if self.select_row(T_ACCOUNT, &k).await?.is_some() {
                        self.write_row(t, &k, &None).await?;
                        *d.global.entry("accounts").or_default() -= 1;
                    }
                }
                _ => self.write_row(t, &k, &old).await?,
            }
        }
        for (voter, n) in touched_voters {
            if self.voter_count(&voter).await? - n <= 0 {
                *d.global.entry("voters").or_default() -= 1;
            }
        }
        self.apply_deltas(d).await?;
        self.exec(&self.st.undo_delete, (i(from),)).await?;
        Ok(())
    }

    /// Rolls back to `ancestor`: undoes every batch past it, retracts what was published of
    /// them, and moves the cursor back (to the end of the last batch kept).
    pub(super) async fn rollback(&self, ancestor: u64) -> Result<Option<Cursor>, StoreError> {
        let cur = self.cursor_row().await?;
        let Some(c) = cur.cursor else { return Ok(None) };
        if c.block <= ancestor {
            return Ok(Some(c));
        }
        let plan = self.plan_rollback(ancestor, c.block, cur.first_block).await?;
        self.set_pending(PENDING_ROLLBACK).await?;
        for from in &plan.undone {
            self.undo_batch(*from).await?;
            self.exec(&self.st.batch_delete, (i(*from),)).await?;
        }
        self.retract_orphans(plan.target).await?;
        self.exec(&self.st.blocks_delete_from, (i(plan.target + 1),)).await?;
        self.set_cursor(plan.cursor, plan.events_before, cur.first_block).await?;
        if cur.pending.is_some() {
            self.reconcile(None).await?;
        }
        Ok(plan.cursor)
    }

    /// Finds the batches to undo for a rollback from `cursor` to `ancestor`; fails with
    /// [`StoreError::ReorgTooDeep`] unless they are contiguous journals reaching `ancestor + 1`.
    async fn plan_rollback(&self, ancestor: u64, cursor: u64, first_block: Option<u64>) -> Result<RollbackPlan, StoreError> {
        let mut batches: Vec<(u64, u64, u64)> = self
            .all::<(i64, Option<i64>, Option<i64>)>(&self.st.batches_all, ())
            .await?
            .into_iter()
            .map(|(f, t, e)| (f as u64, t.unwrap_or(0) as u64, e.unwrap_or(0) as u64))
            .collect();
        batches.sort_unstable();
        // Batches past the cursor belong to an interrupted commit: undone as well.
        let undone: Vec<(u64, u64, u64)> = batches.iter().rev().take_while(|(_, to, _)| *to > ancestor).copied().collect();
        let mut expect_to = cursor;
        for (from, to, _) in undone.iter().filter(|(f, _, _)| *f <= cursor) {
            if *to != expect_to {
                return Err(StoreError::ReorgTooDeep { ancestor });
            }
            expect_to = from.saturating_sub(1);
        }
        let (earliest, _, events_before) = *undone.iter().rev().find(|(f, _, _)| *f <= cursor).ok_or(StoreError::ReorgTooDeep { ancestor })?;
        if earliest > ancestor + 1 {
            return Err(StoreError::ReorgTooDeep { ancestor });
        }
        let target = earliest - 1;
        let cursor = match self.block(target).await? {
            Some(r) => Some(Cursor { block: r.number, hash: r.hash }),
            None if first_block == Some(earliest) => None,
            None => return Err(StoreError::ReorgTooDeep { ancestor }),
        };
        Ok(RollbackPlan { undone: undone.into_iter().map(|(from, _, _)| from).collect(), target, cursor, events_before })
    }
}
