//! A batch's writes, staged: its mutations turned into table rows before anything is sent, so
//! the commit can journal exactly the rows it will write and group them by partition.

use std::collections::{HashMap, HashSet};

use super::feed::outbox_bucket;
use super::tables::{
    b, enc, i, json_enc, some, Key, Val, Vals, T_ACCOUNT, T_BY_CREATED, T_BY_PROPOSER, T_BY_STATUS, T_HISTORY, T_META, T_OUTBOX, T_OUTBOX_BY_ACCOUNT, T_POWER,
    T_PROPOSALS, T_STREAKS, T_TIMELOCK, T_VOTES_BY_PV, T_VOTES_BY_VOTER,
};
use crate::domain::{u256_be, Address, Proposal, Vote};
use crate::store::{Mutation, StoreError};

/// Writes of one batch: the last write of a key wins, keys keep their first-write order.
#[derive(Default)]
pub(super) struct Staged {
    pub(super) order: Vec<(u8, Key)>,
    pub(super) rows: HashMap<(u8, Key), Option<Vals>>,
}

impl Staged {
    fn put(&mut self, t: u8, k: Key, v: Vals) {
        self.set(t, k, Some(v));
    }
    fn del(&mut self, t: u8, k: Key) {
        self.set(t, k, None);
    }
    fn set(&mut self, t: u8, k: Key, v: Option<Vals>) {
        let key = (t, k);
        if !self.rows.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.rows.insert(key, v);
    }
}

/// Everything a batch writes: the rows, and the vote records and accounts its counters depend on.
#[derive(Default)]
pub(super) struct Plan<'b> {
    pub(super) rows: Staged,
    /// Vote records to insert once each (not through `rows`: they are conditional inserts).
    pub(super) votes: Vec<&'b Vote>,
    /// Accounts the batch writes, in first-write order.
    pub(super) accounts: Vec<Address>,
    /// The status each proposal has after the rows staged so far.
    statuses: HashMap<[u8; 32], Option<i8>>,
    vote_keys: HashSet<Key>,
    seen_accounts: HashSet<Address>,
}

/// The key of a `votes_by_proposal` row.
pub(super) fn vote_key(v: &Vote) -> Key {
    vec![b(&u256_be(&v.proposal_id)), Val::I(i(v.block_number)), Val::I(i(v.log_index))]
}

impl<'b> Plan<'b> {
    /// The status of proposal `id` after the rows staged so far; `None` when this batch has
    /// not written it (the stored status then applies).
    pub(super) fn staged_status(&self, id: &[u8; 32]) -> Option<Option<i8>> {
        self.statuses.get(id).copied()
    }

    /// Stages a proposal and moves its index rows from status `old` (`None`: a new proposal).
    pub(super) fn proposal(&mut self, p: &Proposal, old: Option<i8>) {
        let st = &mut self.rows;
        let id = u256_be(&p.proposal_id);
        let created = Val::I(i(p.created.block_number));
        let new = p.status as u8 as i8;
        match old {
            Some(o) if o != new => {
                st.del(T_BY_STATUS, vec![Val::T(o), created.clone(), b(&id)]);
                st.put(T_BY_STATUS, vec![Val::T(new), created.clone(), b(&id)], vec![]);
            }
            Some(_) => {}
            None => {
                st.put(T_BY_STATUS, vec![Val::T(new), created.clone(), b(&id)], vec![]);
                st.put(T_BY_CREATED, vec![Val::I(0), created.clone(), b(&id)], vec![]);
                st.put(T_BY_PROPOSER, vec![b(&p.proposer.0), created.clone(), b(&id)], vec![]);
            }
        }
        st.put(T_PROPOSALS, vec![b(&id)], vec![some(Val::T(new)), some(Val::B(enc(p)))]);
        self.statuses.insert(id, Some(new));
    }

    /// Stages a mutation; a proposal is handed back instead, as its index rows depend on its
    /// stored status (the caller reads it, then calls [`Plan::proposal`]). An outbox event
    /// whose JSON cannot be written fails the commit rather than storing an empty row.
    pub(super) fn mutation(&mut self, m: &'b Mutation) -> Result<Option<&'b Proposal>, StoreError> {
        let st = &mut self.rows;
        match m {
            Mutation::Proposal(p) => return Ok(Some(p)),
            Mutation::History(h) => {
                let k = vec![b(&u256_be(&h.proposal_id)), Val::I(i(h.block_number)), Val::T(h.status as u8 as i8)];
                st.put(T_HISTORY, k, vec![some(Val::B(enc(h)))]);
            }
            Mutation::Vote(v) => {
                let pid = u256_be(&v.proposal_id);
                if self.vote_keys.insert(vote_key(v)) {
                    self.votes.push(v.as_ref());
                }
                st.put(T_VOTES_BY_VOTER, vec![b(&v.voter.0), Val::I(i(v.block_number)), Val::I(i(v.log_index))], vec![some(b(&pid))]);
                st.put(T_VOTES_BY_PV, vec![b(&pid), b(&v.voter.0), Val::I(i(v.block_number)), Val::I(i(v.log_index))], vec![]);
            }
            Mutation::Account { account, power } => {
                let body = enc(power);
                st.put(T_POWER, vec![b(&account.0), Val::I(i(power.block_number))], vec![some(Val::I(i(power.timestamp))), some(Val::B(body.clone()))]);
                st.put(T_ACCOUNT, vec![b(&account.0)], vec![some(Val::I(i(power.block_number))), some(Val::B(body))]);
                if self.seen_accounts.insert(*account) {
                    self.accounts.push(*account);
                }
            }
            Mutation::TimelockOp(op) => st.put(T_TIMELOCK, vec![b(&op.id.0)], vec![some(Val::B(enc(op.as_ref())))]),
            Mutation::Info(info) => st.put(T_META, vec![Val::S("info".into())], vec![some(Val::B(enc(info.as_ref())))]),
            Mutation::Outbox { event, achievement } => {
                let k = event.key();
                if *achievement {
                    st.put(T_OUTBOX_BY_ACCOUNT, vec![b(&event.account.0), b(&k)], vec![]);
                }
                let body = json_enc("outbox", event.as_ref())?;
                st.put(T_OUTBOX, vec![Val::I(outbox_bucket(event.block_number)), b(&k)], vec![some(Val::S(body))]);
            }
            Mutation::Streak { voter, streak } => st.put(T_STREAKS, vec![b(&voter.0)], vec![some(Val::B(enc(streak)))]),
        }
        Ok(None)
    }
}
