//! The vote counters (per proposal, per voter, per day, global): CQL counter columns, moved by
//! aggregated deltas, and reconciled from the vote rows after an interrupted write or on demand.
//!
//! Counter updates are not idempotent, so a commit moves them only for the vote records its
//! conditional inserts applied; when a write was interrupted the counters may be off by the
//! part it sent, and [`Inner::reconcile`] recomputes them from the rows.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use ::scylla::value::Counter;
use futures::stream::TryStreamExt;

use super::session::{be, Fut, Inner};
use crate::domain::{u256_be, U256};
use crate::store::{ReconcileReport, StoreError};

/// A `votes_by_proposal` row as reconciliation reads it.
type VoteCountRow = (i64, i64, Option<Vec<u8>>, Option<i8>, Option<String>);
/// The five counters of a proposal (see [`Deltas::proposals`]), as read.
type ProposalCounters = (Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>);

/// Vote counter deltas, aggregated before they are sent.
#[derive(Default)]
pub(super) struct Deltas {
    /// proposal -> [votes, against, for, abstain, other]
    pub(super) proposals: HashMap<Vec<u8>, [i64; 5]>,
    pub(super) voters: HashMap<Vec<u8>, i64>,
    pub(super) days: HashMap<String, i64>,
    pub(super) global: HashMap<&'static str, i64>,
}

impl Deltas {
    /// Counts a vote `d` times (1 for a new record, -1 for a deleted one).
    pub(super) fn vote(&mut self, pid: &[u8], voter: &[u8], support: i8, day: &str, d: i64) {
        let p = self.proposals.entry(pid.to_vec()).or_default();
        p[0] += d;
        p[support_column(support)] += d;
        *self.voters.entry(voter.to_vec()).or_default() += d;
        *self.days.entry(day.to_string()).or_default() += d;
        *self.global.entry("votes").or_default() += d;
    }
}

/// The proposal counter a vote's `support` adds to.
fn support_column(support: i8) -> usize {
    match support {
        0 => 1,
        1 => 2,
        2 => 3,
        _ => 4,
    }
}

/// Counts one counter checked and, when `have` is not `want`, one corrected; returns the fix.
fn note(have: i64, want: i64, rep: &mut ReconcileReport) -> i64 {
    rep.counters_checked += 1;
    let d = want - have;
    if d != 0 {
        rep.counters_corrected += 1;
        rep.drift += d.unsigned_abs();
    }
    d
}

/// The fixes of every counter either side has (a missing counter is zero).
fn fixes<K: Hash + Eq + Clone>(have: &HashMap<K, i64>, want: &HashMap<K, i64>, rep: &mut ReconcileReport) -> HashMap<K, i64> {
    let keys: HashSet<K> = have.keys().chain(want.keys()).cloned().collect();
    keys.into_iter()
        .map(|k| {
            let d = note(have.get(&k).copied().unwrap_or(0), want.get(&k).copied().unwrap_or(0), rep);
            (k, d)
        })
        .collect()
}

/// Counter rows as a map (a null counter is zero).
fn counter_map<K: Hash + Eq>(rows: Vec<(K, Option<Counter>)>) -> HashMap<K, i64> {
    rows.into_iter().map(|(k, c)| (k, c.map_or(0, |c| c.0))).collect()
}

impl Inner {
    /// Adds the deltas to the counters (zero deltas are not sent).
    pub(super) async fn apply_deltas(&self, d: Deltas) -> Result<(), StoreError> {
        let mut futs: Vec<Fut<'_, ()>> = Vec::new();
        for (pid, c) in d.proposals {
            if c.iter().all(|x| *x == 0) {
                continue;
            }
            futs.push(Box::pin(async move {
                self.exec(&self.st.pc_add, (Counter(c[0]), Counter(c[1]), Counter(c[2]), Counter(c[3]), Counter(c[4]), pid)).await.map(|_| ())
            }));
        }
        for (voter, n) in d.voters.into_iter().filter(|(_, n)| *n != 0) {
            futs.push(Box::pin(async move { self.exec(&self.st.vc_add, (Counter(n), voter)).await.map(|_| ()) }));
        }
        for (day, n) in d.days.into_iter().filter(|(_, n)| *n != 0) {
            futs.push(Box::pin(async move { self.exec(&self.st.dc_add, (Counter(n), day)).await.map(|_| ()) }));
        }
        for (name, n) in d.global.into_iter().filter(|(_, n)| *n != 0) {
            futs.push(Box::pin(async move { self.exec(&self.st.gc_add, (Counter(n), name)).await.map(|_| ()) }));
        }
        self.each(futs).await?;
        Ok(())
    }

    /// A voter's vote counter.
    pub(super) async fn voter_count(&self, voter: &[u8]) -> Result<i64, StoreError> {
        Ok(self.one::<(Option<Counter>,)>(&self.st.vc_get, (voter,)).await?.and_then(|r| r.0).map_or(0, |c| c.0))
    }

    /// A proposal's five counters (zeros when it has none).
    async fn proposal_counters(&self, pid: Vec<u8>) -> Result<[i64; 5], StoreError> {
        let have = self.one::<ProposalCounters>(&self.st.pc_get, (pid,)).await?;
        Ok(have.map_or([0; 5], |h| [h.0, h.1, h.2, h.3, h.4].map(|c| c.map_or(0, |c| c.0))))
    }

    /// Recomputes the counters from the vote rows and adds the differences.
    pub(super) async fn reconcile(&self, proposal: Option<&U256>) -> Result<ReconcileReport, StoreError> {
        let rep = match proposal {
            Some(pid) => self.reconcile_proposal(u256_be(pid).to_vec()).await?,
            None => self.reconcile_all().await?,
        };
        if rep.counters_corrected > 0 {
            metrics::counter!(crate::metrics::STORE_COUNTER_CORRECTIONS_TOTAL).increment(rep.counters_corrected);
        }
        Ok(rep)
    }

    /// Reconciles one proposal's counters with its vote rows.
    async fn reconcile_proposal(&self, pid: Vec<u8>) -> Result<ReconcileReport, StoreError> {
        let mut rep = ReconcileReport::default();
        let rows: Vec<VoteCountRow> = self.all(&self.st.votes_all, (pid.clone(),)).await?;
        let mut want = [0i64; 5];
        for (_, _, _, support, _) in &rows {
            want[0] += 1;
            want[support_column(support.unwrap_or(-1))] += 1;
        }
        rep.votes_scanned = rows.len() as u64;
        let have = self.proposal_counters(pid.clone()).await?;
        let mut fix = Deltas::default();
        rep.counters_checked = 5;
        let diff = [0, 1, 2, 3, 4].map(|k| want[k] - have[k]);
        if diff.iter().any(|d| *d != 0) {
            rep.counters_corrected = diff.iter().filter(|d| **d != 0).count() as u64;
            rep.drift = diff.iter().map(|d| d.unsigned_abs()).sum();
            fix.proposals.insert(pid, diff);
        }
        self.apply_deltas(fix).await?;
        Ok(rep)
    }

    /// Reconciles every counter with a scan of every vote row.
    async fn reconcile_all(&self) -> Result<ReconcileReport, StoreError> {
        let mut rep = ReconcileReport::default();
        let want = self.counters_from_rows(&mut rep).await?;
        let mut fix = Deltas::default();
        type Pc = (Vec<u8>, Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>);
        let have_p: Vec<Pc> = self.all(&self.st.pc_all, ()).await?;
        let mut have_pm: HashMap<Vec<u8>, [i64; 5]> = HashMap::new();
        for (pid, a, b_, c, d_, e) in have_p {
            have_pm.insert(pid, [a, b_, c, d_, e].map(|c| c.map_or(0, |c| c.0)));
        }
        let pids: HashSet<Vec<u8>> = have_pm.keys().chain(want.proposals.keys()).cloned().collect();
        for pid in pids {
            let h = have_pm.get(&pid).copied().unwrap_or_default();
            let w = want.proposals.get(&pid).copied().unwrap_or_default();
            let diff = [0, 1, 2, 3, 4].map(|k| note(h[k], w[k], &mut rep));
            fix.proposals.insert(pid, diff);
        }
        let have_v = counter_map(self.all::<(Vec<u8>, Option<Counter>)>(&self.st.vc_all, ()).await?);
        fix.voters = fixes(&have_v, &want.voters, &mut rep);
        let have_d = counter_map(self.all::<(String, Option<Counter>)>(&self.st.dc_all, ()).await?);
        fix.days = fixes(&have_d, &want.days, &mut rep);
        // Only the global counters the store keeps are checked, not every name in the table.
        let have_g = counter_map(self.all::<(String, Option<Counter>)>(&self.st.gc_all, ()).await?);
        for (k, w) in want.global.iter() {
            let d = note(have_g.get(*k).copied().unwrap_or(0), *w, &mut rep);
            fix.global.insert(k, d);
        }
        self.apply_deltas(fix).await?;
        Ok(rep)
    }

    /// What every counter should be: a scan of the vote rows, and the accounts.
    async fn counters_from_rows(&self, rep: &mut ReconcileReport) -> Result<Deltas, StoreError> {
        let mut want = Deltas::default();
        let mut scan = {
            let mut st = self.st.votes_scan.clone();
            st.set_page_size(self.page_size);
            self.session.execute_iter(st, ()).await.map_err(be)?.rows_stream::<(Vec<u8>, Option<Vec<u8>>, Option<i8>, Option<String>)>().map_err(be)?
        };
        while let Some((pid, voter, support, day)) = scan.try_next().await.map_err(be)? {
            rep.votes_scanned += 1;
            want.vote(&pid, &voter.unwrap_or_default(), support.unwrap_or(-1), &day.unwrap_or_default(), 1);
        }
        let voters = want.voters.len() as i64;
        want.global.insert("voters", voters);
        let accounts: Vec<(Vec<u8>,)> = self.all(&self.st.accounts_count, ()).await?;
        want.global.insert("accounts", accounts.len() as i64);
        want.global.entry("votes").or_insert(0);
        Ok(want)
    }
}
