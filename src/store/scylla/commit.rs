//! The journaled commit of a [`Batch`].
//!
//! ## A batch without multi-table transactions
//! CQL has no transaction across tables, so a [`Batch`] is made atomic in effect:
//! 1. the cursor row is marked `pending = from` (the batch in flight);
//! 2. for a reversible batch, the previous value of every row it will write is journaled
//!    (`undo_log`, partition = the batch's first block) before any of them is written;
//! 3. the rows are written; every row write is an idempotent upsert or delete (its key and
//!    value are functions of the chain), so writing it twice changes nothing;
//! 4. vote records are written with `INSERT ... IF NOT EXISTS`; the vote counters move only
//!    for the inserts that were applied, so replays never count twice;
//! 5. the cursor row is written with `pending = null` — this is the commit point.
//!
//! A crash between 1 and 5 leaves `pending` set. The next commit (which restarts from the same
//! cursor) first undoes the journal of the interrupted batch, then reconciles every counter
//! from the vote rows, so a crash can neither leave ghost rows of an orphaned chain nor let a
//! counter drift. Readers may see the rows of a batch before its cursor (read-uncommitted at
//! the edge), never rows the chain does not have once the cursor has passed them.
//!
//! Tests stop a commit after a stage with a failpoint (`journal`, `rows`, `votes`,
//! `counters`), leaving the store as a crash there would.

use std::collections::{HashMap, HashSet};

use ::scylla::statement::batch::{Batch as CqlBatch, BatchType};
use ::scylla::value::{CqlValue, Row};

use super::counters::Deltas;
use super::cursor::CursorRow;
use super::session::{be, Fut, Inner};
use super::stage::{vote_key, Plan};
use super::tables::{b, enc, group_by_partition, i, row_bytes, Key, Val, Vals, T_ACCOUNT, T_PROPOSALS, T_VOTES};
use crate::domain::{u256_be, Vote};
use crate::store::{utc_day, Batch, Cursor, StoreError};

/// Counter inputs read before anything is written.
struct Before {
    /// The vote counter of each voter of the batch's vote records.
    voter_counts: HashMap<Vec<u8>, i64>,
    /// How many of the batch's accounts are not stored yet.
    new_accounts: i64,
}

impl Inner {
    /// Commits a batch: its rows, its vote records once, their counters, then the cursor.
    pub(super) async fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let cur = self.begin(batch).await?;
        let plan = self.stage(batch).await?;
        let before = self.read_before(&plan).await?;
        let votes = if batch.reversible {
            let fresh = self.journal(batch.from, &plan).await?;
            self.failpoint("journal")?;
            fresh
        } else {
            plan.votes.clone()
        };
        self.write_rows(&plan).await?;
        self.failpoint("rows")?;
        let applied = self.insert_votes(votes).await?;
        self.failpoint("votes")?;
        self.count_votes(&applied, before).await?;
        self.failpoint("counters")?;
        self.write_headers(batch, cur.events).await?;
        if let Some(floor) = batch.prune_below {
            self.prune(floor, batch.to).await?;
        }
        self.finish(batch, &cur).await
    }

    /// Checks that the batch continues the cursor, undoes an interrupted write, and marks
    /// this one in flight (step 1).
    async fn begin(&self, batch: &Batch) -> Result<CursorRow, StoreError> {
        let cur = self.cursor_row().await?;
        if let Some(c) = cur.cursor {
            if batch.from != c.block + 1 {
                return Err(StoreError::Backend(format!("batch starts at block {} but the cursor is at {}", batch.from, c.block)));
            }
        }
        if let Some(p) = cur.pending {
            tracing::warn!(target: "store", pending = p, "the previous write was interrupted; undoing its journal, then reconciling the counters");
            self.undo_stale(cur.cursor.map(|c| c.block)).await?;
        }
        self.set_pending(i(batch.from)).await?;
        Ok(cur)
    }

    /// Stages every row write (a proposal's index rows follow its status as earlier
    /// mutations of the batch left it, else as stored).
    async fn stage<'b>(&self, batch: &'b Batch) -> Result<Plan<'b>, StoreError> {
        let mut plan = Plan::default();
        for m in &batch.mutations {
            if let Some(p) = plan.mutation(m)? {
                let id = u256_be(&p.proposal_id);
                let old = match plan.staged_status(&id) {
                    Some(s) => s,
                    None => self.stored_status(&id).await?,
                };
                plan.proposal(p, old);
            }
        }
        Ok(plan)
    }

    /// A proposal's stored status.
    async fn stored_status(&self, id: &[u8; 32]) -> Result<Option<i8>, StoreError> {
        Ok(match self.select_row(T_PROPOSALS, &vec![b(id)]).await? {
            Some(v) => match v.first() {
                Some(Some(Val::T(s))) => Some(*s),
                _ => None,
            },
            None => None,
        })
    }

    /// Reads the counters depend on, before anything is written.
    async fn read_before(&self, plan: &Plan<'_>) -> Result<Before, StoreError> {
        let mut voters: Vec<Vec<u8>> = plan.votes.iter().map(|v| v.voter.0.to_vec()).collect();
        voters.sort();
        voters.dedup();
        let futs: Vec<Fut<'_, (Vec<u8>, i64)>> = voters
            .into_iter()
            .map(|v| -> Fut<'_, (Vec<u8>, i64)> {
                Box::pin(async move {
                    let n = self.voter_count(&v).await?;
                    Ok((v, n))
                })
            })
            .collect();
        let voter_counts: HashMap<Vec<u8>, i64> = self.each(futs).await?.into_iter().collect();
        let futs: Vec<Fut<'_, bool>> = plan
            .accounts
            .iter()
            .map(|a| -> Fut<'_, bool> { Box::pin(async move { Ok(self.select_row(T_ACCOUNT, &vec![b(&a.0)]).await?.is_none()) }) })
            .collect();
        let new_accounts = self.each(futs).await?.into_iter().filter(|n| *n).count() as i64;
        Ok(Before { voter_counts, new_accounts })
    }

    /// Write-ahead journal of a reversible batch (step 2): the previous value of every staged
    /// row, and an absent row for every vote record it will insert. Returns those vote records:
    /// a vote row that is already there is not written again, so it is not journaled either.
    async fn journal<'b>(&self, from: u64, plan: &Plan<'b>) -> Result<Vec<&'b Vote>, StoreError> {
        let keys: Vec<(u8, Key)> = plan.rows.order.clone();
        let futs: Vec<Fut<'_, Option<Vals>>> = keys.iter().map(|(t, k)| -> Fut<'_, Option<Vals>> { Box::pin(self.select_row(*t, k)) }).collect();
        let olds = self.each(futs).await?;
        let mut recs: Vec<(u8, Key, Option<Vals>)> = keys.into_iter().zip(olds).map(|((t, k), o)| (t, k, o)).collect();
        let vkeys: Vec<Key> = plan.votes.iter().map(|v| vote_key(v)).collect();
        let futs: Vec<Fut<'_, Option<Vals>>> = vkeys.iter().map(|k| -> Fut<'_, Option<Vals>> { Box::pin(self.select_row(T_VOTES, k)) }).collect();
        let exist = self.each(futs).await?;
        let fresh = plan.votes.iter().zip(&exist).filter(|(_, e)| e.is_none()).map(|(v, _)| *v).collect();
        for (k, e) in vkeys.into_iter().zip(exist) {
            if e.is_none() {
                recs.push((T_VOTES, k, None));
            }
        }
        let from = i(from);
        let futs: Vec<Fut<'_, ()>> = recs
            .into_iter()
            .enumerate()
            .map(|(seq, (t, k, old))| -> Fut<'_, ()> {
                Box::pin(async move {
                    let old = old.map(|o| enc(&o));
                    self.exec(&self.st.undo_put, (from, seq as i32, t as i8, enc(&k), old)).await.map(|_| ())
                })
            })
            .collect();
        self.each(futs).await?;
        Ok(fresh)
    }

    /// The rows (step 3), grouped by partition into unlogged batches (one round trip and one
    /// mutation per partition instead of one per row).
    async fn write_rows(&self, plan: &Plan<'_>) -> Result<(), StoreError> {
        let st = &plan.rows;
        let rows: Vec<(u8, &Key, &Option<Vals>)> = st.order.iter().map(|key| (key.0, &key.1, &st.rows[key])).collect();
        let futs: Vec<Fut<'_, ()>> = group_by_partition(rows, |(t, k, _)| (*t, k.first().cloned()), |(_, k, v)| row_bytes(k, v))
            .into_iter()
            .map(|g| -> Fut<'_, ()> { Box::pin(self.write_group(g)) })
            .collect();
        self.each(futs).await?;
        Ok(())
    }

    /// Vote records once (step 4): one conditional batch per proposal partition (Paxos once
    /// per group, not per vote). Returns the records that were inserted.
    async fn insert_votes<'v>(&self, votes: Vec<&'v Vote>) -> Result<Vec<&'v Vote>, StoreError> {
        let sent = votes.len();
        let futs: Vec<Fut<'_, Vec<&Vote>>> = group_by_partition(
            votes,
            |v| (T_VOTES, Some(Val::B(u256_be(&v.proposal_id).to_vec()))),
            |v| 192 + v.reason.as_ref().map_or(0, String::len) + v.params.as_ref().map_or(0, |p| p.0.len()),
        )
        .into_iter()
        .map(|g| -> Fut<'_, Vec<&Vote>> { Box::pin(self.insert_votes_once(g)) })
        .collect();
        let applied: Vec<&Vote> = self.each(futs).await?.into_iter().flatten().collect();
        let replays = (sent - applied.len()) as u64;
        if replays > 0 {
            metrics::counter!(crate::metrics::STORE_VOTE_REPLAYS_TOTAL).increment(replays);
        }
        Ok(applied)
    }

    /// Inserts vote records of one proposal that are not there yet, with one conditional
    /// batch; when some exist the batch applies nothing and names them, and the others are
    /// sent again. Returns the records this call inserted.
    async fn insert_votes_once<'v>(&self, votes: Vec<&'v Vote>) -> Result<Vec<&'v Vote>, StoreError> {
        let mut todo = votes;
        let mut inserted = Vec::new();
        while !todo.is_empty() {
            let values: Vec<_> = todo
                .iter()
                .map(|v| {
                    (u256_be(&v.proposal_id).to_vec(), i(v.block_number), i(v.log_index), v.voter.0.to_vec(), v.support as i8, utc_day(v.timestamp), enc(*v))
                })
                .collect();
            let r = if todo.len() == 1 {
                self.exec(&self.st.vote_insert_lwt, &values[0]).await?
            } else {
                let mut batch = CqlBatch::new(BatchType::Unlogged);
                for _ in &todo {
                    batch.append_statement(self.st.vote_insert_lwt.clone());
                }
                self.session.batch(&batch, &values).await.map_err(be)?
            };
            let rows = r.into_rows_result().map_err(be)?;
            let ok = matches!(rows.first_row::<Row>().map_err(be)?.columns.first(), Some(Some(CqlValue::Boolean(true))));
            if ok {
                inserted.append(&mut todo);
                break;
            }
            let specs = rows.column_specs();
            let (Some((bi, _)), Some((li, _))) = (specs.get_by_name("block_number"), specs.get_by_name("log_index")) else {
                return Err(StoreError::Backend("a conditional vote batch did not apply and named no existing row".into()));
            };
            let mut have: HashSet<(i64, i64)> = HashSet::new();
            for row in rows.rows::<Row>().map_err(be)? {
                let row = row.map_err(be)?;
                if let (Some(Some(CqlValue::BigInt(b_))), Some(Some(CqlValue::BigInt(l)))) = (row.columns.get(bi), row.columns.get(li)) {
                    have.insert((*b_, *l));
                }
            }
            let before = todo.len();
            todo.retain(|v| !have.contains(&(i(v.block_number), i(v.log_index))));
            if todo.len() == before {
                return Err(StoreError::Backend("a conditional vote batch did not apply but every row is new".into()));
            }
        }
        Ok(inserted)
    }

    /// Moves the counters for the vote records that were inserted, and counts the voters and
    /// accounts seen for the first time.
    async fn count_votes(&self, applied: &[&Vote], before: Before) -> Result<(), StoreError> {
        let mut d = Deltas::default();
        for v in applied {
            d.vote(&u256_be(&v.proposal_id), &v.voter.0, v.support as i8, &utc_day(v.timestamp), 1);
        }
        let new_voters = d.voters.keys().filter(|v| before.voter_counts.get(*v).copied().unwrap_or(0) <= 0).count() as i64;
        *d.global.entry("voters").or_default() += new_voters;
        *d.global.entry("accounts").or_default() += before.new_accounts;
        self.apply_deltas(d).await
    }

    /// The batch's headers and, for a reversible batch, its entry in the list of journals.
    async fn write_headers(&self, batch: &Batch, events_before: u64) -> Result<(), StoreError> {
        let futs: Vec<Fut<'_, ()>> = batch
            .blocks
            .iter()
            .map(|blk| -> Fut<'_, ()> {
                Box::pin(async move {
                    self.exec(&self.st.block_put, (i(blk.number), blk.hash.0.to_vec(), blk.parent_hash.0.to_vec(), i(blk.timestamp))).await.map(|_| ())
                })
            })
            .collect();
        self.each(futs).await?;
        if batch.reversible {
            self.exec(&self.st.batch_put, (i(batch.from), i(batch.to), i(events_before))).await?;
        }
        Ok(())
    }

    /// Forgets the journals of batches wholly below `floor`, and the headers below both the
    /// oldest kept journal and `floor` (never past the new cursor, `cursor`).
    async fn prune(&self, floor: u64, cursor: u64) -> Result<(), StoreError> {
        let batches: Vec<(i64, Option<i64>, Option<i64>)> = self.all(&self.st.batches_all, ()).await?;
        let mut kept_first: Option<u64> = None;
        for (from, to, _) in batches {
            let (from, to) = (from as u64, to.unwrap_or(0) as u64);
            if from < floor && to < floor {
                self.exec(&self.st.undo_delete, (i(from),)).await?;
                self.exec(&self.st.batch_delete, (i(from),)).await?;
            } else if kept_first.is_none() {
                kept_first = Some(from);
            }
        }
        let keep_from = kept_first.map_or(floor, |f| f.saturating_sub(1).min(floor)).min(cursor);
        self.exec(&self.st.blocks_delete_below, (i(keep_from),)).await?;
        Ok(())
    }

    /// The commit point (step 5): the new cursor with `pending` cleared; then, after an
    /// interrupted write, the counters are reconciled.
    async fn finish(&self, batch: &Batch, cur: &CursorRow) -> Result<(), StoreError> {
        let events = cur.events + batch.events.len() as u64;
        let first = cur.first_block.or(Some(batch.from));
        self.set_cursor(Some(Cursor { block: batch.to, hash: batch.to_hash }), events, first).await?;
        if cur.pending.is_some() {
            let r = self.reconcile(None).await?;
            tracing::warn!(target: "store", corrected = r.counters_corrected, drift = r.drift, "counters reconciled after an interrupted write");
        }
        Ok(())
    }
}
