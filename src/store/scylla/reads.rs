//! The API's reads, each from the table written for it.

use std::collections::{BTreeMap, HashMap};

use ::scylla::value::Counter;
use futures::stream::TryStreamExt;

use super::session::{be, Fut, Inner};
use super::tables::{b, body, dec, i, Val, T_ACCOUNT, T_META, T_PROPOSALS, T_STREAKS, T_TIMELOCK, T_VOTES};
use crate::domain::achievement::Streak;
use crate::domain::{u256_be, AccountPower, Address, GovernorInfo, HistoryEntry, Proposal, ProposalStatus, TimelockOperation, Vote, B256, U256};
use crate::store::{page_proposals, page_sorted, sort_history, Page, ProposalQuery, Stats, StoreError, VoteCounts, VoteQuery, VoteSort, STATS_DAYS};

/// A `votes_by_proposal` row as vote pages read it: block, log index, support, body.
type VotePageRow = (i64, i64, Option<i8>, Option<Vec<u8>>);

/// The (block, log index) position a keyset cursor of a vote page encodes.
fn vote_position(a: &[u8]) -> (i64, i64) {
    let blk = a.get(..8).and_then(|x| x.try_into().ok()).map_or(0, u64::from_be_bytes);
    let log = a.get(8..16).and_then(|x| x.try_into().ok()).map_or(0, u64::from_be_bytes);
    (i(blk), i(log))
}

/// The keyset cursor of a vote page ending at (block, log index).
fn vote_cursor(blk: i64, log: i64) -> Vec<u8> {
    [(blk as u64).to_be_bytes(), (log as u64).to_be_bytes()].concat()
}

impl Inner {
    /// The governor's settings.
    pub(super) async fn info(&self) -> Result<Option<GovernorInfo>, StoreError> {
        match self.select_row(T_META, &vec![Val::S("info".into())]).await? {
            Some(v) => match v.into_iter().next().flatten() {
                Some(Val::B(b)) => Ok(Some(dec("meta", &b)?)),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// A proposal by its id column.
    pub(super) async fn proposal(&self, id: Vec<u8>) -> Result<Option<Proposal>, StoreError> {
        match self.select_row(T_PROPOSALS, &vec![Val::B(id)]).await? {
            Some(v) => match v.into_iter().nth(1).flatten() {
                Some(Val::B(b)) => Ok(Some(dec("proposals", &b)?)),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Proposals by id, read concurrently (missing ones are skipped).
    async fn proposals(&self, ids: Vec<Vec<u8>>) -> Result<Vec<Proposal>, StoreError> {
        let futs: Vec<Fut<'_, Option<Proposal>>> = ids.into_iter().map(|id| -> Fut<'_, Option<Proposal>> { Box::pin(self.proposal(id)) }).collect();
        Ok(self.each(futs).await?.into_iter().flatten().collect())
    }

    /// Ids of the proposals with status `st`.
    async fn ids_by_status(&self, st: ProposalStatus) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows: Vec<(Vec<u8>,)> = self.all(&self.st.by_status, (st as u8 as i8,)).await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Proposals whose status is not final.
    pub(super) async fn live_proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        let mut ids = Vec::new();
        for st in ProposalStatus::ALL.iter().filter(|x| !x.is_final()) {
            ids.extend(self.ids_by_status(*st).await?);
        }
        self.proposals(ids).await
    }

    /// A page of proposals, from the index that narrows the query most.
    pub(super) async fn list_proposals(&self, q: &ProposalQuery) -> Result<Page<Proposal>, StoreError> {
        let mut ids: Vec<Vec<u8>> = Vec::new();
        if !q.statuses.is_empty() {
            for st in &q.statuses {
                ids.extend(self.ids_by_status(*st).await?);
            }
        } else if let Some(p) = &q.proposer {
            let rows: Vec<(Vec<u8>,)> = self.all(&self.st.by_proposer, (p.0.to_vec(),)).await?;
            ids.extend(rows.into_iter().map(|r| r.0));
        } else {
            let rows: Vec<(Vec<u8>,)> = self.all(&self.st.by_created, ()).await?;
            ids.extend(rows.into_iter().map(|r| r.0));
        }
        Ok(page_proposals(self.proposals(ids).await?, q))
    }

    /// A proposal's status history.
    pub(super) async fn history(&self, id: &U256) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows: Vec<(Option<Vec<u8>>,)> = self.all(&self.st.history, (u256_be(id).to_vec(),)).await?;
        let mut out = rows.into_iter().map(|r| body("proposal_history", r.0)).collect::<Result<Vec<HistoryEntry>, _>>()?;
        sort_history(&mut out);
        Ok(out)
    }

    /// A vote record by its key columns.
    async fn vote_at(&self, pid: Vec<u8>, blk: i64, log: i64) -> Result<Option<Vote>, StoreError> {
        match self.select_row(T_VOTES, &vec![Val::B(pid), Val::I(blk), Val::I(log)]).await? {
            Some(v) => match v.into_iter().nth(3).flatten() {
                Some(Val::B(b)) => Ok(Some(dec("votes_by_proposal", &b)?)),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// A voter's latest vote record on a proposal.
    pub(super) async fn vote(&self, id: &U256, voter: &Address) -> Result<Option<Vote>, StoreError> {
        let pid = u256_be(id).to_vec();
        let Some((blk, log)) = self.one::<(i64, i64)>(&self.st.vote_of_voter, (pid.clone(), voter.0.to_vec())).await? else { return Ok(None) };
        self.vote_at(pid, blk, log).await
    }

    /// A page of a proposal's votes.
    pub(super) async fn proposal_votes(&self, id: &U256, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
        let pid = u256_be(id).to_vec();
        match q.sort {
            VoteSort::Block => self.proposal_votes_by_block(pid, q).await,
            VoteSort::Weight => self.proposal_votes_by_weight(pid, q).await,
        }
    }

    /// A page of a proposal's votes in block order, read from the cursor on, just past a page.
    async fn proposal_votes_by_block(&self, pid: Vec<u8>, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
        let (st, (blk, log)) = match (&q.after, q.descending) {
            (Some(a), false) => (&self.st.votes_asc, vote_position(a)),
            (Some(a), true) => (&self.st.votes_desc, vote_position(a)),
            (None, false) => (&self.st.votes_asc, (-1, -1)),
            (None, true) => (&self.st.votes_desc, (i64::MAX, i64::MAX)),
        };
        let mut st = st.clone();
        st.set_page_size(self.page_size.min(q.limit as i32 + 1).max(1));
        let mut rows = self.session.execute_iter(st, (pid, blk, log)).await.map_err(be)?.rows_stream::<VotePageRow>().map_err(be)?;
        let mut out = Vec::new();
        let mut last = None;
        let mut more = false;
        while let Some((blk, log, support, b)) = rows.try_next().await.map_err(be)? {
            if !keeps(q, support) {
                continue;
            }
            if out.len() == q.limit {
                more = true;
                break;
            }
            last = Some(vote_cursor(blk, log));
            out.push(body::<Vote>("votes_by_proposal", b)?);
        }
        Ok(Page { items: out, next: if more { last } else { None } })
    }

    /// A page of a proposal's votes by weight: every vote is read and sorted.
    async fn proposal_votes_by_weight(&self, pid: Vec<u8>, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
        let rows: Vec<VotePageRow> = self.all(&self.st.votes_asc, (pid, -1i64, -1i64)).await?;
        let mut keyed = Vec::new();
        for (blk, log, support, b) in rows {
            if !keeps(q, support) {
                continue;
            }
            let v: Vote = body("votes_by_proposal", b)?;
            let k = [u256_be(&v.weight).as_slice(), &(blk as u64).to_be_bytes(), &(log as u64).to_be_bytes()].concat();
            keyed.push((k, v));
        }
        Ok(page_sorted(keyed, q.descending, q.after.as_deref(), q.limit))
    }

    /// A page of a voter's votes, in block order.
    pub(super) async fn voter_votes(&self, voter: &Address, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
        let (blk, log) = match &q.after {
            Some(a) => vote_position(a),
            None if q.descending => (i64::MAX, i64::MAX),
            None => (-1, -1),
        };
        let st = if q.descending { &self.st.voter_desc } else { &self.st.voter_asc };
        let limit = (q.limit + 1).min(i32::MAX as usize) as i32;
        let refs: Vec<(i64, i64, Option<Vec<u8>>)> = self.all(st, (voter.0.to_vec(), blk, log, limit)).await?;
        let more = refs.len() > q.limit;
        let refs: Vec<_> = refs.into_iter().take(q.limit).collect();
        let next = if more { refs.last().map(|(b_, l, _)| vote_cursor(*b_, *l)) } else { None };
        let futs: Vec<Fut<'_, Option<Vote>>> =
            refs.into_iter().map(|(b_, l, p)| -> Fut<'_, Option<Vote>> { Box::pin(self.vote_at(p.unwrap_or_default(), b_, l)) }).collect();
        let items = self.each(futs).await?.into_iter().flatten().collect();
        Ok(Page { items, next })
    }

    /// An account's current state.
    pub(super) async fn account(&self, account: &Address) -> Result<Option<AccountPower>, StoreError> {
        match self.select_row(T_ACCOUNT, &vec![b(&account.0)]).await? {
            Some(v) => match v.into_iter().nth(1).flatten() {
                Some(Val::B(b)) => Ok(Some(dec("account_latest", &b)?)),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Every account's current state, by address.
    pub(super) async fn latest_accounts(&self) -> Result<Vec<(Address, AccountPower)>, StoreError> {
        let rows: Vec<(Vec<u8>, Option<Vec<u8>>)> = self.all(&self.st.accounts_all, ()).await?;
        let mut out = rows
            .into_iter()
            .map(|(a, b)| Ok((Address::from_slice(&a).unwrap_or_default(), body("account_latest", b)?)))
            .collect::<Result<Vec<(Address, AccountPower)>, StoreError>>()?;
        out.sort_by_key(|x| x.0);
        Ok(out)
    }

    /// An account's state after block `block`.
    pub(super) async fn account_at_block(&self, account: &Address, block: u64) -> Result<Option<AccountPower>, StoreError> {
        match self.one::<(Option<Vec<u8>>,)>(&self.st.power_at_block, (account.0.to_vec(), i(block))).await? {
            Some((b,)) => Ok(Some(body("voting_power", b)?)),
            None => Ok(None),
        }
    }

    /// An account's state at unix time `ts`: its checkpoints are read newest first.
    pub(super) async fn account_at_time(&self, account: &Address, ts: u64) -> Result<Option<AccountPower>, StoreError> {
        let mut st = self.st.power_desc.clone();
        st.set_page_size(self.page_size);
        let mut rows = self.session.execute_iter(st, (account.0.to_vec(),)).await.map_err(be)?.rows_stream::<(Option<i64>, Option<Vec<u8>>)>().map_err(be)?;
        while let Some((t, b)) = rows.try_next().await.map_err(be)? {
            if t.unwrap_or(0) as u64 <= ts {
                return Ok(Some(body("voting_power", b)?));
            }
        }
        Ok(None)
    }

    /// A timelock operation by id.
    pub(super) async fn timelock_op(&self, id: &B256) -> Result<Option<TimelockOperation>, StoreError> {
        match self.select_row(T_TIMELOCK, &vec![b(&id.0)]).await? {
            Some(v) => match v.into_iter().next().flatten() {
                Some(Val::B(b)) => Ok(Some(dec("timelock_operations", &b)?)),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Governance-wide counters: proposals counted per status, the rest from counter tables.
    pub(super) async fn stats(&self) -> Result<Stats, StoreError> {
        let mut out = Stats::default();
        for st in ProposalStatus::ALL {
            let n = self.one::<(i64,)>(&self.st.by_status_count, (st as u8 as i8,)).await?.map_or(0, |r| r.0) as u64;
            out.by_status.insert(st.as_str().to_string(), n);
            out.proposals += n;
        }
        let g: HashMap<String, i64> =
            self.all::<(String, Option<Counter>)>(&self.st.gc_all, ()).await?.into_iter().map(|(k, c)| (k, c.map_or(0, |c| c.0))).collect();
        let get = |k: &str| g.get(k).copied().unwrap_or(0).max(0) as u64;
        out.votes = get("votes");
        out.unique_voters = get("voters");
        out.accounts = get("accounts");
        out.events = self.cursor_row().await?.events;
        let days: Vec<(String, Option<Counter>)> = self.all(&self.st.dc_all, ()).await?;
        let days: BTreeMap<String, u64> = days.into_iter().filter_map(|(d, c)| c.map(|c| (d, c.0.max(0) as u64))).filter(|(_, n)| *n > 0).collect();
        out.votes_by_day = days.into_iter().rev().take(STATS_DAYS).collect();
        Ok(out)
    }

    /// A voter's participation streak (the default when it has none).
    pub(super) async fn streak(&self, voter: &Address) -> Result<Streak, StoreError> {
        match self.select_row(T_STREAKS, &vec![b(&voter.0)]).await? {
            Some(v) => match v.into_iter().next().flatten() {
                Some(Val::B(b)) => dec("participation_streaks", &b),
                _ => Ok(Streak::default()),
            },
            None => Ok(Streak::default()),
        }
    }

    /// A proposal's vote counters.
    pub(super) async fn vote_counts(&self, id: &U256) -> Result<VoteCounts, StoreError> {
        type R = (Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>);
        let Some(r) = self.one::<R>(&self.st.pc_get, (u256_be(id).to_vec(),)).await? else { return Ok(VoteCounts::default()) };
        let n = |c: Option<Counter>| c.map_or(0, |c| c.0.max(0) as u64);
        Ok(VoteCounts { total: n(r.0), against: n(r.1), for_: n(r.2), abstain: n(r.3), fractional: n(r.4) })
    }
}

/// Whether a vote with `support` passes the query's support filter.
fn keeps(q: &VoteQuery, support: Option<i8>) -> bool {
    q.support.is_none_or(|x| Some(x as i8) == support)
}
