//! The embedded backend, on redb.
//!
//! Why redb rather than fjall: govflow's write path is "one atomic transaction across a dozen
//! tables plus the cursor, per batch of blocks", and its read path is ordered range scans
//! served concurrently with that writer. redb gives exactly that in one file: serializable
//! multi-table write transactions, MVCC readers that never block the writer, ordered B-trees,
//! crash safety by copy-on-write with checksums, and no background compaction threads competing
//! for the two cores. fjall's LSM trees would buy write amplification we do not need (a batch is
//! already one large sequential transaction) at the cost of cross-keyspace atomicity being an
//! extra layer.
//!
//! Every table maps bytes to bytes; keys are fixed-width big-endian tuples so that B-tree order
//! is the query order, values are bincode.

use std::path::Path;

use redb::{Database, Durability, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Serialize};

use super::*;
use crate::domain::achievement::{FeedItem, GovernanceEvent};
use crate::domain::u256_be;

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

const META: Def = TableDefinition::new("meta");
const PROPOSALS: Def = TableDefinition::new("proposals");
const BY_CREATED: Def = TableDefinition::new("proposals_by_created");
const BY_STATUS: Def = TableDefinition::new("proposals_by_status");
const BY_PROPOSER: Def = TableDefinition::new("proposals_by_proposer");
const HISTORY: Def = TableDefinition::new("proposal_history");
const VOTES: Def = TableDefinition::new("votes_by_proposal_block");
const VOTES_BY_VOTER: Def = TableDefinition::new("votes_by_voter");
const POWER: Def = TableDefinition::new("voting_power_by_account_block");
const TIMELOCK: Def = TableDefinition::new("timelock_operations");
const OUTBOX: Def = TableDefinition::new("governance_events_outbox");
const OUTBOX_BY_ACCOUNT: Def = TableDefinition::new("governance_events_by_account");
const STREAKS: Def = TableDefinition::new("participation_streaks");
const PUBLISHED: Def = TableDefinition::new("governance_events_published");
const FEED: Def = TableDefinition::new("governance_events_feed");
const BLOCKS: Def = TableDefinition::new("blocks");
const UNDO: Def = TableDefinition::new("undo");
const BATCHES: Def = TableDefinition::new("reversible_batches");

/// Tables whose writes are journaled for rollback, in journal-id order.
const JOURNALED: [Def; 13] =
    [META, PROPOSALS, BY_CREATED, BY_STATUS, BY_PROPOSER, HISTORY, VOTES, VOTES_BY_VOTER, POWER, TIMELOCK, OUTBOX, OUTBOX_BY_ACCOUNT, STREAKS];
const T_META: usize = 0;
const T_PROPOSALS: usize = 1;
const T_BY_CREATED: usize = 2;
const T_BY_STATUS: usize = 3;
const T_BY_PROPOSER: usize = 4;
const T_HISTORY: usize = 5;
const T_VOTES: usize = 6;
const T_VOTES_BY_VOTER: usize = 7;
const T_POWER: usize = 8;
const T_TIMELOCK: usize = 9;
const T_OUTBOX: usize = 10;
const T_OUTBOX_BY_ACCOUNT: usize = 11;
const T_STREAKS: usize = 12;

const K_CURSOR: &[u8] = b"cursor";
const K_INFO: &[u8] = b"info";
const K_COUNTERS: &[u8] = b"counters";
const K_FIRST_BLOCK: &[u8] = b"first_block";
/// Outbox key of the last event published to the feed (not journaled).
const K_PUBLISHED_UPTO: &[u8] = b"published_upto";
/// Last feed position (not journaled).
const K_FEED_SEQ: &[u8] = b"feed_seq";

#[derive(Serialize, serde::Deserialize, Default)]
struct Counters {
    votes: u64,
    events: u64,
    voters: u64,
    accounts: u64,
    /// Votes per UTC day (`YYYY-MM-DD`).
    days: std::collections::BTreeMap<String, u64>,
}

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("in-memory bincode serialization cannot fail for these types")
}

/// JSON of a row (the outbox and the feed hold events exactly as the schema defines them); a
/// value that cannot be written fails the commit rather than storing an empty row.
fn json_enc<T: Serialize + ?Sized>(table: &'static str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(format!("{table}: value not serialisable as JSON: {e}")))
}

fn dec<T: DeserializeOwned>(table: &'static str, b: &[u8]) -> Result<T, StoreError> {
    bincode::deserialize(b).map_err(|e| StoreError::Corrupt { table, message: e.to_string() })
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut e = prefix.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xff {
            e.push(last + 1);
            return e;
        }
    }
    vec![0xff; prefix.len() + 1]
}

/// The embedded store.
pub struct EmbeddedStore {
    db: Database,
    durable: bool,
}

struct Writer<'t> {
    tables: Vec<Table<'t, &'static [u8], &'static [u8]>>,
    undo: Table<'t, &'static [u8], &'static [u8]>,
    journal: Option<(u64, u32)>,
}

impl<'t> Writer<'t> {
    fn open(tx: &'t WriteTransaction, journal_batch: Option<u64>) -> Result<Self, StoreError> {
        let tables = JOURNALED.iter().map(|d| tx.open_table(*d).map_err(be)).collect::<Result<Vec<_>, _>>()?;
        Ok(Writer { tables, undo: tx.open_table(UNDO).map_err(be)?, journal: journal_batch.map(|b| (b, 0)) })
    }

    fn record(&mut self, t: usize, k: &[u8], old: Option<Vec<u8>>) -> Result<(), StoreError> {
        if let Some((batch, seq)) = self.journal.as_mut() {
            let key = cat(&[&batch.to_be_bytes(), &seq.to_be_bytes()]);
            *seq += 1;
            let mut rec = Vec::with_capacity(6 + k.len() + old.as_ref().map_or(0, Vec::len));
            rec.push(t as u8);
            rec.extend_from_slice(&(k.len() as u32).to_be_bytes());
            rec.extend_from_slice(k);
            if let Some(o) = old {
                rec.push(1);
                rec.extend_from_slice(&o);
            } else {
                rec.push(0);
            }
            self.undo.insert(key.as_slice(), rec.as_slice()).map_err(be)?;
        }
        Ok(())
    }

    fn get(&self, t: usize, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tables[t].get(k).map_err(be)?.map(|g| g.value().to_vec()))
    }

    fn has_prefix(&self, t: usize, prefix: &[u8]) -> Result<bool, StoreError> {
        let end = prefix_end(prefix);
        Ok(self.tables[t].range(prefix..end.as_slice()).map_err(be)?.next().is_some())
    }

    fn put(&mut self, t: usize, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        let old = self.tables[t].insert(k, v).map_err(be)?.map(|g| g.value().to_vec());
        self.record(t, k, old)
    }

    fn del(&mut self, t: usize, k: &[u8]) -> Result<(), StoreError> {
        let old = self.tables[t].remove(k).map_err(be)?.map(|g| g.value().to_vec());
        if old.is_some() {
            self.record(t, k, old)?;
        }
        Ok(())
    }

    /// Turns a mutation into staged key writes (reads see earlier staged proposal rows).
    fn stage(&mut self, m: &Mutation, st: &mut Staged) -> Result<(), StoreError> {
        match m {
            Mutation::Proposal(p) => {
                let id = u256_be(&p.proposal_id);
                let old: Option<Proposal> = match st.proposals.get(&id) {
                    Some(o) => Some(o.clone()),
                    None => match self.get(T_PROPOSALS, &id)? {
                        Some(b) => Some(dec("proposals", &b)?),
                        None => None,
                    },
                };
                let created = p.created.block_number.to_be_bytes();
                match &old {
                    Some(o) if o.status != p.status => {
                        st.del(T_BY_STATUS, cat(&[&[o.status as u8], &created, &id]));
                        st.put(T_BY_STATUS, cat(&[&[p.status as u8], &created, &id]), vec![]);
                    }
                    Some(_) => {}
                    None => {
                        st.put(T_BY_STATUS, cat(&[&[p.status as u8], &created, &id]), vec![]);
                        st.put(T_BY_CREATED, cat(&[&created, &id]), vec![]);
                        st.put(T_BY_PROPOSER, cat(&[&p.proposer.0, &created, &id]), vec![]);
                    }
                }
                st.put(T_PROPOSALS, id.to_vec(), enc(p.as_ref()));
                st.proposals.insert(id, p.as_ref().clone());
            }
            Mutation::History(h) => {
                let k = cat(&[&u256_be(&h.proposal_id), &h.block_number.to_be_bytes(), &[h.status as u8]]);
                st.put(T_HISTORY, k, enc(h));
            }
            Mutation::Vote(v) => {
                let id = u256_be(&v.proposal_id);
                let pos = cat(&[&v.block_number.to_be_bytes(), &v.log_index.to_be_bytes()]);
                let k = cat(&[&id, &pos]);
                // A replayed vote record changes nothing (identity = proposal, block, log index).
                if self.get(T_VOTES, &k)?.is_some() {
                    return Ok(());
                }
                st.put(T_VOTES, k, enc(v.as_ref()));
                // Distinct voters are counted at their first vote (a read, cheaper than an index).
                if st.voters.insert(v.voter) && !self.has_prefix(T_VOTES_BY_VOTER, &v.voter.0)? {
                    st.counters.voters += 1;
                }
                st.put(T_VOTES_BY_VOTER, cat(&[&v.voter.0, &pos]), id.to_vec());
                st.counters.votes += 1;
                *st.counters.days.entry(utc_day(v.timestamp)).or_insert(0) += 1;
            }
            Mutation::Account { account, power } => {
                let v = enc(power);
                if st.accounts.insert(*account) && !self.has_prefix(T_POWER, &account.0)? {
                    st.counters.accounts += 1;
                }
                st.put(T_POWER, cat(&[&account.0, &power.block_number.to_be_bytes()]), v);
            }
            Mutation::TimelockOp(op) => {
                st.put(T_TIMELOCK, op.id.0.to_vec(), enc(op.as_ref()));
            }
            Mutation::Info(info) => {
                st.put(T_META, K_INFO.to_vec(), enc(info.as_ref()));
            }
            Mutation::Outbox { event: e, achievement } => {
                let k = e.key();
                if *achievement {
                    st.put(T_OUTBOX_BY_ACCOUNT, cat(&[&e.account.0, &k]), vec![]);
                }
                // JSON: the outbox holds the event exactly as the schema defines it.
                st.put(T_OUTBOX, k, json_enc("outbox", e.as_ref())?);
            }
            Mutation::Streak { voter, streak } => {
                st.put(T_STREAKS, voter.0.to_vec(), enc(streak));
            }
        }
        Ok(())
    }

    /// Applies staged writes sorted by table and key (stable, so the last write to a key
    /// wins): B-tree inserts in key order touch each page once and stay in cache.
    fn flush(&mut self, st: &mut Staged) -> Result<(), StoreError> {
        let mut ops = std::mem::take(&mut st.ops);
        ops.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (t, k, v) in ops {
            match v {
                Some(v) => self.put(t as usize, &k, &v)?,
                None => self.del(t as usize, &k)?,
            }
        }
        Ok(())
    }
}

/// A multiplicative hasher for the staging sets: keys are addresses (already uniformly
/// distributed), so SipHash's DoS resistance buys nothing on this hot path.
#[derive(Default, Clone, Copy)]
struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

type FastHash = std::hash::BuildHasherDefault<FastHasher>;

/// Writes of one batch, staged before they are applied in key order.
#[derive(Default)]
struct Staged {
    ops: Vec<(u8, Vec<u8>, Option<Vec<u8>>)>,
    proposals: std::collections::HashMap<[u8; 32], Proposal>,
    voters: std::collections::HashSet<Address, FastHash>,
    accounts: std::collections::HashSet<Address, FastHash>,
    counters: Counters,
}

impl Staged {
    fn put(&mut self, t: usize, k: Vec<u8>, v: Vec<u8>) {
        self.ops.push((t as u8, k, Some(v)));
    }
    fn del(&mut self, t: usize, k: Vec<u8>) {
        self.ops.push((t as u8, k, None));
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend(format!("{}: {e}", dir.display())))?;
        let db = Database::create(dir.join("govflow.redb")).map_err(be)?;
        let tx = db.begin_write().map_err(be)?;
        for d in JOURNALED.iter().chain([BLOCKS, UNDO, BATCHES, PUBLISHED, FEED].iter()) {
            tx.open_table(*d).map_err(be)?;
        }
        tx.commit().map_err(be)?;
        Ok(EmbeddedStore { db, durable: true })
    }

    /// Skips the fsync at each commit (benchmarks and throwaway stores only: a crash may then
    /// lose the last commits, though never tear one).
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    fn get_raw(&self, def: Def, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let t = tx.open_table(def).map_err(be)?;
        Ok(t.get(k).map_err(be)?.map(|g| g.value().to_vec()))
    }

    fn load_proposals(&self, tx: &redb::ReadTransaction, ids: &[Vec<u8>]) -> Result<Vec<Proposal>, StoreError> {
        let t = tx.open_table(PROPOSALS).map_err(be)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(g) = t.get(id.as_slice()).map_err(be)? {
                out.push(dec("proposals", g.value())?);
            }
        }
        Ok(out)
    }

    fn load_votes(&self, tx: &redb::ReadTransaction, keys: &[Vec<u8>]) -> Result<Vec<Vote>, StoreError> {
        let t = tx.open_table(VOTES).map_err(be)?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(g) = t.get(k.as_slice()).map_err(be)? {
                out.push(dec("votes", g.value())?);
            }
        }
        Ok(out)
    }

    /// Scans keys with `prefix` in order, after (or before, descending) the cursor key, calling
    /// `f` with each key until it returns false.
    fn scan(
        tx: &redb::ReadTransaction,
        def: Def,
        prefix: &[u8],
        after: Option<&[u8]>,
        descending: bool,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let t = tx.open_table(def).map_err(be)?;
        let end = prefix_end(prefix);
        let iter = match (after, descending) {
            (Some(a), false) => {
                let mut lo = a.to_vec();
                lo.push(0);
                t.range(lo.as_slice()..end.as_slice()).map_err(be)?
            }
            (Some(a), true) => t.range(prefix..a).map_err(be)?,
            (None, _) => t.range(prefix..end.as_slice()).map_err(be)?,
        };
        if descending {
            for r in iter.rev() {
                let (k, v) = r.map_err(be)?;
                if !f(k.value(), v.value())? {
                    break;
                }
            }
        } else {
            for r in iter {
                let (k, v) = r.map_err(be)?;
                if !f(k.value(), v.value())? {
                    break;
                }
            }
        }
        Ok(())
    }
}

impl Store for EmbeddedStore {
    fn info(&self) -> Result<Option<GovernorInfo>, StoreError> {
        self.get_raw(META, K_INFO)?.map(|b| dec("meta", &b)).transpose()
    }

    fn init_info(&self, info: &GovernorInfo) -> Result<(), StoreError> {
        if let Some(old) = self.info()? {
            if old.chain_id != info.chain_id || old.governor != info.governor {
                return Err(StoreError::WrongDeployment {
                    stored: format!("governor {} on chain {}", old.governor, old.chain_id),
                    configured: format!("governor {} on chain {}", info.governor, info.chain_id),
                });
            }
        }
        let tx = self.db.begin_write().map_err(be)?;
        tx.open_table(META).map_err(be)?.insert(K_INFO, enc(info).as_slice()).map_err(be)?;
        tx.commit().map_err(be)
    }

    fn cursor(&self) -> Result<Option<Cursor>, StoreError> {
        self.get_raw(META, K_CURSOR)?.map(|b| dec("meta", &b)).transpose()
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(be)?;
        if !self.durable {
            tx.set_durability(Durability::None);
        }
        {
            let mut w = Writer::open(&tx, batch.reversible.then_some(batch.from))?;
            match w.get(T_META, K_CURSOR)? {
                Some(c) => {
                    let c: Cursor = dec("meta", &c)?;
                    if batch.from != c.block + 1 {
                        return Err(StoreError::Backend(format!("batch starts at block {} but the cursor is at {}", batch.from, c.block)));
                    }
                }
                // Not journaled: it stays whatever is rolled back.
                None => {
                    w.tables[T_META].insert(K_FIRST_BLOCK, enc(&batch.from).as_slice()).map_err(be)?;
                }
            }
            let mut st = Staged::default();
            if let Some(b) = w.get(T_META, K_COUNTERS)? {
                st.counters = dec("meta", &b)?;
            }
            for m in &batch.mutations {
                w.stage(m, &mut st)?;
            }
            st.counters.events += batch.events.len() as u64;
            let c = enc(&st.counters);
            st.put(T_META, K_COUNTERS.to_vec(), c);
            w.flush(&mut st)?;
            // The cursor itself is not journaled: rollback sets it explicitly.
            w.tables[T_META].insert(K_CURSOR, enc(&Cursor { block: batch.to, hash: batch.to_hash }).as_slice()).map_err(be)?;
        }
        {
            let mut blocks = tx.open_table(BLOCKS).map_err(be)?;
            for b in &batch.blocks {
                blocks.insert(b.number.to_be_bytes().as_slice(), enc(b).as_slice()).map_err(be)?;
            }
            let mut batches = tx.open_table(BATCHES).map_err(be)?;
            if batch.reversible {
                batches.insert(batch.from.to_be_bytes().as_slice(), batch.to.to_be_bytes().as_slice()).map_err(be)?;
            }
            if let Some(floor) = batch.prune_below {
                let old: Vec<(u64, u64)> = batches
                    .range(..floor.to_be_bytes().as_slice())
                    .map_err(be)?
                    .filter_map(|r| r.ok())
                    .map(|(k, v)| (u64::from_be_bytes(k.value().try_into().unwrap_or([0; 8])), u64::from_be_bytes(v.value().try_into().unwrap_or([0; 8]))))
                    .filter(|(_, to)| *to < floor)
                    .collect();
                let mut undo = tx.open_table(UNDO).map_err(be)?;
                for (from, _) in old {
                    batches.remove(from.to_be_bytes().as_slice()).map_err(be)?;
                    let lo = from.to_be_bytes();
                    let hi = (from + 1).to_be_bytes();
                    undo.retain_in(lo.as_slice()..hi.as_slice(), |_, _| false).map_err(be)?;
                }
                // Keep the header each retained batch would roll back to, and the cursor's.
                let first_kept = batches.first().map_err(be)?.map(|(k, _)| u64::from_be_bytes(k.value().try_into().unwrap_or([0; 8])).saturating_sub(1));
                let keep_from = first_kept.map_or(floor, |f| f.min(floor)).min(batch.to);
                blocks.retain_in(..keep_from.to_be_bytes().as_slice(), |_, _| false).map_err(be)?;
            }
        }
        tx.commit().map_err(be)
    }

    fn rollback(&self, ancestor: u64) -> Result<Option<Cursor>, StoreError> {
        let tx = self.db.begin_write().map_err(be)?;
        let new_cursor;
        {
            let mut batches = tx.open_table(BATCHES).map_err(be)?;
            let mut undone: Vec<(u64, u64)> = Vec::new();
            for r in batches.iter().map_err(be)?.rev() {
                let (k, v) = r.map_err(be)?;
                let from = u64::from_be_bytes(k.value().try_into().unwrap_or([0; 8]));
                let to = u64::from_be_bytes(v.value().try_into().unwrap_or([0; 8]));
                if to <= ancestor {
                    break;
                }
                undone.push((from, to));
            }
            let meta = tx.open_table(META).map_err(be)?;
            let cur: Option<Cursor> = meta.get(K_CURSOR).map_err(be)?.map(|g| dec("meta", g.value())).transpose()?;
            drop(meta);
            let Some(cur) = cur else { return Ok(None) };
            if cur.block <= ancestor {
                return Ok(Some(cur));
            }
            // The undone batches must cover every block from the ancestor to the cursor:
            // blocks committed without a journal cannot be undone.
            let mut expect_to = cur.block;
            for (from, to) in &undone {
                if *to != expect_to {
                    return Err(StoreError::ReorgTooDeep { ancestor });
                }
                expect_to = from.saturating_sub(1);
            }
            let earliest = undone.last().map(|(f, _)| *f).ok_or(StoreError::ReorgTooDeep { ancestor })?;
            if earliest > ancestor + 1 {
                return Err(StoreError::ReorgTooDeep { ancestor });
            }
            let mut w = Writer::open(&tx, None)?;
            for (from, _) in &undone {
                let lo = from.to_be_bytes();
                let hi = (from + 1).to_be_bytes();
                let recs: Vec<Vec<u8>> = w
                    .undo
                    .range(lo.as_slice()..hi.as_slice())
                    .map_err(be)?
                    .map(|r| r.map(|(_, v)| v.value().to_vec()))
                    .collect::<Result<_, _>>()
                    .map_err(be)?;
                for rec in recs.iter().rev() {
                    let t = rec[0] as usize;
                    let klen = u32::from_be_bytes(rec[1..5].try_into().unwrap_or([0; 4])) as usize;
                    let k = &rec[5..5 + klen];
                    let has_old = rec[5 + klen] == 1;
                    if t >= JOURNALED.len() {
                        return Err(StoreError::Corrupt { table: "undo", message: format!("table id {t}") });
                    }
                    if has_old {
                        w.tables[t].insert(k, &rec[6 + klen..]).map_err(be)?;
                    } else {
                        w.tables[t].remove(k).map_err(be)?;
                    }
                }
                w.undo.retain_in(lo.as_slice()..hi.as_slice(), |_, _| false).map_err(be)?;
                batches.remove(lo.as_slice()).map_err(be)?;
            }
            let target = earliest - 1;
            retract_orphans(&tx, &mut w, target)?;
            let mut blocks = tx.open_table(BLOCKS).map_err(be)?;
            blocks.retain_in((target + 1).to_be_bytes().as_slice().., |_, _| false).map_err(be)?;
            let rec: Option<BlockRecord> = blocks.get(target.to_be_bytes().as_slice()).map_err(be)?.map(|g| dec("blocks", g.value())).transpose()?;
            // Undoing the very first batch empties the store: indexing restarts from the start
            // block. Otherwise the header of the block to resume from must be known; without
            // it, refuse rather than lose the cursor.
            let first: Option<u64> = w.get(T_META, K_FIRST_BLOCK)?.map(|b| dec("meta", &b)).transpose()?;
            new_cursor = match rec {
                Some(r) => Some(Cursor { block: r.number, hash: r.hash }),
                None if first == Some(earliest) => None,
                None => return Err(StoreError::ReorgTooDeep { ancestor }),
            };
            match &new_cursor {
                Some(c) => {
                    w.tables[T_META].insert(K_CURSOR, enc(c).as_slice()).map_err(be)?;
                }
                None => {
                    w.tables[T_META].remove(K_CURSOR).map_err(be)?;
                }
            }
        }
        tx.commit().map_err(be)?;
        Ok(new_cursor)
    }

    fn block(&self, number: u64) -> Result<Option<BlockRecord>, StoreError> {
        self.get_raw(BLOCKS, &number.to_be_bytes())?.map(|b| dec("blocks", &b)).transpose()
    }

    fn recent_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let t = tx.open_table(BLOCKS).map_err(be)?;
        let mut out = Vec::new();
        for r in t.iter().map_err(be)? {
            let (_, v) = r.map_err(be)?;
            out.push(dec("blocks", v.value())?);
        }
        Ok(out)
    }

    fn proposal(&self, id: &U256) -> Result<Option<Proposal>, StoreError> {
        self.get_raw(PROPOSALS, &u256_be(id))?.map(|b| dec("proposals", &b)).transpose()
    }

    fn live_proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let mut ids = Vec::new();
        for st in ProposalStatus::ALL.iter().filter(|s| !s.is_final()) {
            Self::scan(&tx, BY_STATUS, &[*st as u8], None, false, |k, _| {
                ids.push(k[9..].to_vec());
                Ok(true)
            })?;
        }
        self.load_proposals(&tx, &ids)
    }

    fn list_proposals(&self, q: &ProposalQuery) -> Result<Page<Proposal>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        // Pick the narrowest index for the candidate set.
        let mut ids: Vec<Vec<u8>> = Vec::new();
        if !q.statuses.is_empty() {
            for st in &q.statuses {
                Self::scan(&tx, BY_STATUS, &[*st as u8], None, false, |k, _| {
                    ids.push(k[9..].to_vec());
                    Ok(true)
                })?;
            }
        } else if let Some(p) = &q.proposer {
            Self::scan(&tx, BY_PROPOSER, &p.0, None, false, |k, _| {
                ids.push(k[28..].to_vec());
                Ok(true)
            })?;
        } else {
            Self::scan(&tx, BY_CREATED, &[], None, false, |k, _| {
                ids.push(k[8..].to_vec());
                Ok(true)
            })?;
        }
        Ok(page_proposals(self.load_proposals(&tx, &ids)?, q))
    }

    fn history(&self, id: &U256) -> Result<Vec<HistoryEntry>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let mut out: Vec<HistoryEntry> = Vec::new();
        Self::scan(&tx, HISTORY, &u256_be(id), None, false, |_, v| {
            out.push(dec("proposal_history", v)?);
            Ok(true)
        })?;
        // Same-block changes (e.g. Succeeded and Queued) keep causal order, not enum order.
        sort_history(&mut out);
        Ok(out)
    }

    fn vote(&self, id: &U256, voter: &Address) -> Result<Option<Vote>, StoreError> {
        // A voter's votes are few: scan them, newest first, for this proposal.
        let tx = self.db.begin_read().map_err(be)?;
        let pid = u256_be(id);
        let mut key = None;
        Self::scan(&tx, VOTES_BY_VOTER, &voter.0, None, true, |k, v| {
            if v == pid.as_slice() {
                key = Some(cat(&[v, &k[20..]]));
                return Ok(false);
            }
            Ok(true)
        })?;
        match key {
            Some(k) => Ok(self.load_votes(&tx, &[k])?.pop()),
            None => Ok(None),
        }
    }

    fn proposal_votes(&self, id: &U256, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let pid = u256_be(id);
        let keep = |v: &Vote| q.support.is_none_or(|s| s == v.support);
        match q.sort {
            VoteSort::Block => {
                // Keyset on (block, log index), straight from the table's order.
                let after = q.after.as_ref().map(|a| cat(&[&pid, a]));
                let mut out = Vec::new();
                let mut last = None;
                let mut more = false;
                Self::scan(&tx, VOTES, &pid, after.as_deref(), q.descending, |k, v| {
                    let v: Vote = dec("votes", v)?;
                    if !keep(&v) {
                        return Ok(true);
                    }
                    if out.len() == q.limit {
                        more = true;
                        return Ok(false);
                    }
                    last = Some(k[32..].to_vec());
                    out.push(v);
                    Ok(true)
                })?;
                Ok(Page { items: out, next: if more { last } else { None } })
            }
            VoteSort::Weight => {
                // A proposal's votes are sorted by weight in memory (weights never change once
                // cast, so the order is stable); keyset on (weight, block, log index).
                let mut rows: Vec<(Vec<u8>, Vote)> = Vec::new();
                Self::scan(&tx, VOTES, &pid, None, false, |k, v| {
                    let v: Vote = dec("votes", v)?;
                    if keep(&v) {
                        rows.push((cat(&[&u256_be(&v.weight), &k[32..]]), v));
                    }
                    Ok(true)
                })?;
                Ok(page_sorted(rows, q.descending, q.after.as_deref(), q.limit))
            }
        }
    }

    fn voter_votes(&self, voter: &Address, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let after = q.after.as_ref().map(|a| cat(&[&voter.0, a]));
        let mut refs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut more = false;
        Self::scan(&tx, VOTES_BY_VOTER, &voter.0, after.as_deref(), q.descending, |k, v| {
            if refs.len() == q.limit {
                more = true;
                return Ok(false);
            }
            refs.push((k[20..].to_vec(), cat(&[v, &k[20..]])));
            Ok(true)
        })?;
        let items = self.load_votes(&tx, &refs.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>())?;
        let next = if more { refs.last().map(|(c, _)| c.clone()) } else { None };
        Ok(Page { items, next })
    }

    fn account(&self, account: &Address) -> Result<Option<AccountPower>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let mut found = None;
        Self::scan(&tx, POWER, &account.0, None, true, |_, v| {
            found = Some(dec("voting_power", v)?);
            Ok(false)
        })?;
        Ok(found)
    }

    fn latest_accounts(&self) -> Result<Vec<(Address, AccountPower)>, StoreError> {
        // One pass over the checkpoints keeping each account's last one.
        let tx = self.db.begin_read().map_err(be)?;
        let mut out: Vec<(Address, AccountPower)> = Vec::new();
        Self::scan(&tx, POWER, &[], None, false, |k, v| {
            let a = Address::from_slice(&k[..20]).unwrap_or_default();
            let p: AccountPower = dec("voting_power", v)?;
            match out.last_mut() {
                Some((last, lp)) if *last == a => *lp = p,
                _ => out.push((a, p)),
            }
            Ok(true)
        })?;
        Ok(out)
    }

    fn account_at_block(&self, account: &Address, block: u64) -> Result<Option<AccountPower>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let t = tx.open_table(POWER).map_err(be)?;
        let hi = cat(&[&account.0, &block.to_be_bytes()]);
        let r = t.range(account.0.as_slice()..=hi.as_slice()).map_err(be)?.next_back();
        match r {
            Some(r) => Ok(Some(dec("voting_power", r.map_err(be)?.1.value())?)),
            None => Ok(None),
        }
    }

    fn account_at_time(&self, account: &Address, ts: u64) -> Result<Option<AccountPower>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let mut found = None;
        Self::scan(&tx, POWER, &account.0, None, true, |_, v| {
            let p: AccountPower = dec("voting_power", v)?;
            if p.timestamp <= ts {
                found = Some(p);
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(found)
    }

    fn timelock_op(&self, id: &B256) -> Result<Option<TimelockOperation>, StoreError> {
        self.get_raw(TIMELOCK, &id.0)?.map(|b| dec("timelock_operations", &b)).transpose()
    }

    fn streak(&self, voter: &Address) -> Result<crate::domain::achievement::Streak, StoreError> {
        Ok(self.get_raw(STREAKS, &voter.0)?.map(|b| dec("participation_streaks", &b)).transpose()?.unwrap_or_default())
    }

    fn publish_final(&self, finalized: u64) -> Result<Vec<FeedItem>, StoreError> {
        let tx = self.db.begin_write().map_err(be)?;
        let mut out = Vec::new();
        {
            let outbox = tx.open_table(OUTBOX).map_err(be)?;
            let mut published = tx.open_table(PUBLISHED).map_err(be)?;
            let mut feed = tx.open_table(FEED).map_err(be)?;
            let mut meta = tx.open_table(META).map_err(be)?;
            let upto: Option<Vec<u8>> = meta.get(K_PUBLISHED_UPTO).map_err(be)?.map(|g| g.value().to_vec());
            let mut seq: u64 = meta.get(K_FEED_SEQ).map_err(be)?.map(|g| dec("meta", g.value())).transpose()?.unwrap_or(0);
            let end = finalized.saturating_add(1).to_be_bytes();
            let start = match &upto {
                Some(k) => {
                    let mut k = k.clone();
                    k.push(0);
                    k
                }
                None => vec![],
            };
            let mut last = None;
            for r in outbox.range(start.as_slice()..end.as_slice()).map_err(be)? {
                let (k, v) = r.map_err(be)?;
                let event: GovernanceEvent =
                    serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt { table: "governance_events_outbox", message: e.to_string() })?;
                seq += 1;
                feed.insert(seq.to_be_bytes().as_slice(), FeedItem::json_around(seq, "event", v.value()).as_slice()).map_err(be)?;
                let item = FeedItem { seq, item_type: "event".into(), event };
                published.insert(k.value(), v.value()).map_err(be)?;
                last = Some(k.value().to_vec());
                out.push(item);
            }
            if let Some(k) = last {
                meta.insert(K_PUBLISHED_UPTO, k.as_slice()).map_err(be)?;
                meta.insert(K_FEED_SEQ, enc(&seq).as_slice()).map_err(be)?;
            }
        }
        if out.is_empty() {
            tx.abort().map_err(be)?;
        } else {
            tx.commit().map_err(be)?;
        }
        Ok(out)
    }

    fn feed_position(&self) -> Result<u64, StoreError> {
        Ok(self.get_raw(META, K_FEED_SEQ)?.map(|b| dec("meta", &b)).transpose()?.unwrap_or(0))
    }

    fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedItem>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let t = tx.open_table(FEED).map_err(be)?;
        let mut out = Vec::new();
        for r in t.range((after + 1).to_be_bytes().as_slice()..).map_err(be)?.take(limit) {
            let (_, v) = r.map_err(be)?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt { table: "governance_events_feed", message: e.to_string() })?);
        }
        Ok(out)
    }

    fn account_events(&self, account: &Address) -> Result<Vec<(GovernanceEvent, bool)>, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let outbox = tx.open_table(OUTBOX).map_err(be)?;
        let published = tx.open_table(PUBLISHED).map_err(be)?;
        let mut out = Vec::new();
        Self::scan(&tx, OUTBOX_BY_ACCOUNT, &account.0, None, false, |k, _| {
            let key = &k[20..];
            if let Some(g) = outbox.get(key).map_err(be)? {
                let e: GovernanceEvent =
                    serde_json::from_slice(g.value()).map_err(|e| StoreError::Corrupt { table: "governance_events_outbox", message: e.to_string() })?;
                let is_final = published.get(key).map_err(be)?.is_some();
                out.push((e, is_final));
            }
            Ok(true)
        })?;
        Ok(out)
    }

    fn vote_counts(&self, id: &U256) -> Result<VoteCounts, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let mut c = VoteCounts::default();
        Self::scan(&tx, VOTES, &u256_be(id), None, false, |_, v| {
            let v: Vote = dec("votes", v)?;
            c.add(v.support);
            Ok(true)
        })?;
        Ok(c)
    }

    fn voter_vote_count(&self, voter: &Address) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let mut n = 0;
        Self::scan(&tx, VOTES_BY_VOTER, &voter.0, None, false, |_, _| {
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        let tx = self.db.begin_read().map_err(be)?;
        let mut s = Stats::default();
        for st in ProposalStatus::ALL {
            let mut n = 0u64;
            Self::scan(&tx, BY_STATUS, &[st as u8], None, false, |_, _| {
                n += 1;
                Ok(true)
            })?;
            s.by_status.insert(st.as_str().to_string(), n);
            s.proposals += n;
        }
        let c: Counters = match tx.open_table(META).map_err(be)?.get(K_COUNTERS).map_err(be)? {
            Some(g) => dec("meta", g.value())?,
            None => Counters::default(),
        };
        s.votes = c.votes;
        s.events = c.events;
        s.unique_voters = c.voters;
        s.accounts = c.accounts;
        s.votes_by_day = c.days.into_iter().rev().take(STATS_DAYS).collect();
        Ok(s)
    }
}

/// After a rollback to `target`: published events of later blocks that the rollback removed
/// (or replaced) are retracted on the feed, and publishing resumes from `target`.
fn retract_orphans(tx: &WriteTransaction, w: &mut Writer<'_>, target: u64) -> Result<(), StoreError> {
    let mut published = tx.open_table(PUBLISHED).map_err(be)?;
    let mut feed = tx.open_table(FEED).map_err(be)?;
    let from = (target + 1).to_be_bytes();
    let later: Vec<(Vec<u8>, Vec<u8>)> = published
        .range(from.as_slice()..)
        .map_err(be)?
        .map(|r| r.map(|(k, v)| (k.value().to_vec(), v.value().to_vec())))
        .collect::<Result<_, _>>()
        .map_err(be)?;
    let mut seq: u64 = w.get(T_META, K_FEED_SEQ)?.map(|b| dec("meta", &b)).transpose()?.unwrap_or(0);
    for (k, event_json) in later {
        let still = w.tables[T_OUTBOX].get(k.as_slice()).map_err(be)?.map(|g| g.value().to_vec());
        if still.as_deref() == Some(event_json.as_slice()) {
            continue;
        }
        let event: GovernanceEvent =
            serde_json::from_slice(&event_json).map_err(|e| StoreError::Corrupt { table: "governance_events_published", message: e.to_string() })?;
        seq += 1;
        let item = FeedItem { seq, item_type: "retraction".into(), event };
        feed.insert(seq.to_be_bytes().as_slice(), json_enc("governance_feed", &item)?.as_slice()).map_err(be)?;
        published.remove(k.as_slice()).map_err(be)?;
    }
    // Feed bookkeeping is not journaled: written directly, not through the undo log.
    let meta = &mut w.tables[T_META];
    meta.insert(K_FEED_SEQ, enc(&seq).as_slice()).map_err(be)?;
    // Publishing resumes after the last published event at or before the target block.
    let upto: Option<Vec<u8>> =
        published.range(..from.as_slice()).map_err(be)?.next_back().map(|r| r.map(|(k, _)| k.value().to_vec())).transpose().map_err(be)?;
    match upto {
        Some(k) => meta.insert(K_PUBLISHED_UPTO, k.as_slice()).map_err(be)?,
        None => meta.remove(K_PUBLISHED_UPTO).map_err(be)?,
    };
    Ok(())
}
