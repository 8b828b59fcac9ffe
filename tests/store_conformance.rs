//! Store conformance suite: the same tests for every backend (`store_suite!` generates them).
//! Atomic batches with the cursor, rollback of reversible batches, pagination order, filters,
//! idempotent replays.

use std::sync::Arc;

use govflow::domain::*;
use govflow::store::*;

fn proposal(n: u64, status: ProposalStatus, proposer: u8, created_block: u64) -> Proposal {
    let pid = U256::from(n);
    Proposal {
        id: ids::proposal(1, &Address([1; 20]), &pid),
        proposal_id: pid,
        title: format!("P{n}"),
        description: format!("P{n}"),
        proposer: Address([proposer; 20]),
        creation_index: n,
        start_block: created_block + 1,
        end_block: created_block + 10 + n,
        original_end_block: created_block + 10 + n,
        status,
        for_votes: U256::from(n * 10 % 7),
        against_votes: U256::zero(),
        abstain_votes: U256::from(n),
        vote_count: 0,
        quorum: None,
        targets: vec![Address([9; 20])],
        values: vec![U256::zero()],
        signatures: vec![String::new()],
        calldatas: vec![HexBytes(vec![1, 2, 3])],
        eta: None,
        timelock_operation_id: None,
        created: ChainPoint { block_number: created_block, timestamp: created_block * 12, transaction_hash: Some(B256([2; 32])) },
        created_at: created_block * 12,
        updated_at: created_block * 12,
        updated_block: created_block,
        executed_at: None,
        metadata_uri: None,
    }
}

fn vote(pid: u64, voter: u8, weight: u64, block: u64, log: u64) -> Vote {
    Vote {
        id: ids::event(1, &B256([block as u8; 32]), log),
        proposal_id: U256::from(pid),
        voter: Address([voter; 20]),
        support: (voter % 3),
        weight: U256::from(weight),
        reason: None,
        params: None,
        block_number: block,
        block_hash: B256([block as u8; 32]),
        log_index: log,
        transaction_hash: B256([3; 32]),
        timestamp: block * 12,
    }
}

fn batch(from: u64, to: u64, mutations: Vec<Mutation>, reversible: bool) -> Batch {
    Batch {
        from,
        to,
        to_hash: B256([to as u8; 32]),
        blocks: (from..=to).map(|n| BlockRecord { number: n, hash: B256([n as u8; 32]), parent_hash: B256([(n - 1) as u8; 32]), timestamp: n * 12 }).collect(),
        events: (from..=to).map(|n| EventId { block_number: n, block_hash: B256([n as u8; 32]), log_index: 0 }).collect(),
        mutations,
        reversible,
        prune_below: None,
    }
}

fn all_proposal_ids(s: &dyn Store, q: ProposalQuery) -> Vec<u64> {
    let mut out = Vec::new();
    let mut q = q;
    loop {
        let page = s.list_proposals(&q).unwrap();
        out.extend(page.items.iter().map(|p| p.proposal_id.low_u64()));
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    out
}

fn query() -> ProposalQuery {
    ProposalQuery {
        statuses: vec![],
        proposer: None,
        created_from: None,
        created_to: None,
        end_from: None,
        end_to: None,
        sort: ProposalSort::CreatedAt,
        descending: false,
        after: None,
        limit: 2,
    }
}

pub fn batches_commit_atomically_with_the_cursor(s: Arc<dyn Store>) {
    assert_eq!(s.cursor().unwrap(), None);
    s.commit(&batch(1, 3, vec![Mutation::Proposal(Box::new(proposal(1, ProposalStatus::Pending, 1, 2)))], false)).unwrap();
    assert_eq!(s.cursor().unwrap(), Some(Cursor { block: 3, hash: B256([3; 32]) }));
    // A batch that does not continue the cursor is refused and changes nothing.
    let err = s.commit(&batch(5, 6, vec![Mutation::Proposal(Box::new(proposal(2, ProposalStatus::Pending, 1, 5)))], false));
    assert!(err.is_err());
    assert!(s.proposal(&U256::from(2)).unwrap().is_none());
    assert_eq!(s.cursor().unwrap().unwrap().block, 3);
    assert_eq!(s.stats().unwrap().events, 3);
}

pub fn rollback_restores_everything_derived_from_orphaned_blocks(s: Arc<dyn Store>) {
    s.commit(&batch(1, 2, vec![Mutation::Proposal(Box::new(proposal(1, ProposalStatus::Pending, 1, 2)))], true)).unwrap();
    let before = s.proposal(&U256::from(1)).unwrap().unwrap();
    let mut active = proposal(1, ProposalStatus::Active, 1, 2);
    active.for_votes = U256::from(500);
    let acct = Address([7; 20]);
    s.commit(&batch(
        3,
        4,
        vec![
            Mutation::Vote(Box::new(vote(1, 7, 500, 4, 0))),
            Mutation::Proposal(Box::new(active)),
            Mutation::Account {
                account: acct,
                power: AccountPower {
                    balance: U256::from(5),
                    delegate: Some(acct),
                    votes: U256::from(5),
                    block_number: 4,
                    timestamp: 48,
                    ..Default::default()
                },
            },
        ],
        true,
    ))
    .unwrap();
    assert_eq!(s.stats().unwrap().votes, 1);
    assert_eq!(s.stats().unwrap().by_status["Active"], 1);
    let c = s.rollback(2).unwrap().unwrap();
    assert_eq!(c.block, 2);
    assert_eq!(s.cursor().unwrap().unwrap().block, 2);
    assert_eq!(s.proposal(&U256::from(1)).unwrap().unwrap(), before);
    assert!(s.vote(&U256::from(1), &acct).unwrap().is_none());
    assert!(s.account(&acct).unwrap().is_none());
    let st = s.stats().unwrap();
    assert_eq!((st.votes, st.unique_voters, st.by_status["Active"], st.by_status["Pending"]), (0, 0, 0, 1));
    assert_eq!(s.stats().unwrap().events, 2);
    // Re-applying the canonical chain works from the restored cursor.
    s.commit(&batch(3, 3, vec![], true)).unwrap();
    // A rollback below the oldest journal is refused.
    let s2 = s.clone();
    assert!(matches!(s2.rollback(0), Ok(_) | Err(StoreError::ReorgTooDeep { .. })));
}

pub fn rollback_of_everything_restarts_from_the_first_block(s: Arc<dyn Store>) {
    s.commit(&batch(1, 3, vec![Mutation::Proposal(Box::new(proposal(1, ProposalStatus::Pending, 1, 2)))], true)).unwrap();
    s.commit(&batch(4, 5, vec![], true)).unwrap();
    assert_eq!(s.rollback(2).unwrap(), None, "the first batch reached past the ancestor: start over");
    assert_eq!(s.cursor().unwrap(), None);
    assert!(s.proposal(&U256::from(1)).unwrap().is_none());
    assert_eq!(s.stats().unwrap().proposals, 0);
    s.commit(&batch(1, 2, vec![], true)).unwrap();
    assert_eq!(s.cursor().unwrap().unwrap().block, 2);
}

pub fn pruning_keeps_what_a_rollback_needs(s: Arc<dyn Store>) {
    s.commit(&batch(1, 10, vec![], false)).unwrap();
    let mut b = batch(11, 20, vec![Mutation::Proposal(Box::new(proposal(1, ProposalStatus::Pending, 1, 15)))], true);
    b.prune_below = Some(15);
    s.commit(&b).unwrap();
    let mut b = batch(21, 22, vec![], true);
    b.prune_below = Some(18);
    s.commit(&b).unwrap();
    // The batch [11, 20] is still reversible, so block 10's header is kept to resume from.
    assert_eq!(s.rollback(16).unwrap().unwrap().block, 10);
    assert!(s.proposal(&U256::from(1)).unwrap().is_none());
}

pub fn rollback_refuses_unjournaled_blocks(s: Arc<dyn Store>) {
    s.commit(&batch(1, 5, vec![], false)).unwrap();
    s.commit(&batch(6, 6, vec![], true)).unwrap();
    assert!(matches!(s.rollback(3), Err(StoreError::ReorgTooDeep { .. })));
    assert_eq!(s.rollback(5).unwrap().unwrap().block, 5);
}

pub fn proposal_pages_follow_sort_order_and_filters(s: Arc<dyn Store>) {
    let mut muts = Vec::new();
    for n in 1..=7u64 {
        let st = if n % 2 == 0 { ProposalStatus::Active } else { ProposalStatus::Defeated };
        muts.push(Mutation::Proposal(Box::new(proposal(n, st, (n % 3) as u8, 10 + n))));
    }
    s.commit(&batch(1, 20, muts, false)).unwrap();
    assert_eq!(all_proposal_ids(&*s, query()), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(all_proposal_ids(&*s, ProposalQuery { descending: true, ..query() }), vec![7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(all_proposal_ids(&*s, ProposalQuery { statuses: vec![ProposalStatus::Active], ..query() }), vec![2, 4, 6]);
    assert_eq!(all_proposal_ids(&*s, ProposalQuery { proposer: Some(Address([1; 20])), ..query() }), vec![1, 4, 7]);
    assert_eq!(all_proposal_ids(&*s, ProposalQuery { created_from: Some(13 * 12), created_to: Some(15 * 12), ..query() }), vec![3, 4, 5]);
    // forVotes = n*10 % 7: 1->3, 2->6, 3->2, 4->5, 5->1, 6->4, 7->0
    assert_eq!(all_proposal_ids(&*s, ProposalQuery { sort: ProposalSort::ForVotes, descending: true, ..query() }), vec![2, 4, 6, 1, 3, 5, 7]);
    let ends = all_proposal_ids(&*s, ProposalQuery { sort: ProposalSort::EndBlock, end_from: Some(30), ..query() });
    assert_eq!(ends, vec![5, 6, 7]); // end = 20 + 2n
    assert_eq!(s.live_proposals().unwrap().len(), 3);
}

pub fn vote_pages_and_replays(s: Arc<dyn Store>) {
    let mut muts = vec![Mutation::Proposal(Box::new(proposal(1, ProposalStatus::Active, 1, 1)))];
    for i in 0..10u8 {
        muts.push(Mutation::Vote(Box::new(vote(1, i + 10, (i as u64 * 37) % 11 + 1, 2 + i as u64, 0))));
    }
    s.commit(&batch(1, 12, muts.clone(), false)).unwrap();
    // Replaying the same vote records changes nothing.
    s.commit(&batch(13, 13, muts[1..].to_vec(), false)).unwrap();
    assert_eq!(s.stats().unwrap().votes, 10);
    let mut q = VoteQuery { sort: VoteSort::Weight, descending: true, support: None, after: None, limit: 3 };
    let mut weights = Vec::new();
    loop {
        let p = s.proposal_votes(&U256::from(1), &q).unwrap();
        weights.extend(p.items.iter().map(|v| v.weight.low_u64()));
        match p.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    let mut sorted = weights.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(weights.len(), 10);
    assert_eq!(weights, sorted);
    let by_block = s.proposal_votes(&U256::from(1), &VoteQuery { sort: VoteSort::Block, descending: false, support: None, after: None, limit: 100 }).unwrap();
    let blocks: Vec<u64> = by_block.items.iter().map(|v| v.block_number).collect();
    assert_eq!(blocks, (2..12).collect::<Vec<_>>());
    let only_for =
        s.proposal_votes(&U256::from(1), &VoteQuery { sort: VoteSort::Block, descending: false, support: Some(1), after: None, limit: 100 }).unwrap();
    assert!(only_for.items.iter().all(|v| v.support == 1) && !only_for.items.is_empty());
    let mine = s.voter_votes(&Address([12; 20]), &VoteQuery { sort: VoteSort::Block, descending: true, support: None, after: None, limit: 10 }).unwrap();
    assert_eq!(mine.items.len(), 1);
    assert_eq!(s.vote(&U256::from(1), &Address([12; 20])).unwrap().unwrap().block_number, 4);
}

pub fn voting_power_by_block_and_time(s: Arc<dyn Store>) {
    let a = Address([5; 20]);
    let p = |votes: u64, block: u64| Mutation::Account {
        account: a,
        power: AccountPower {
            balance: U256::from(votes),
            delegate: Some(a),
            votes: U256::from(votes),
            block_number: block,
            timestamp: block * 12,
            ..Default::default()
        },
    };
    s.commit(&batch(1, 10, vec![p(10, 3), p(20, 7)], false)).unwrap();
    assert_eq!(s.account_at_block(&a, 2).unwrap(), None);
    assert_eq!(s.account_at_block(&a, 3).unwrap().unwrap().votes, U256::from(10));
    assert_eq!(s.account_at_block(&a, 6).unwrap().unwrap().votes, U256::from(10));
    assert_eq!(s.account_at_block(&a, 100).unwrap().unwrap().votes, U256::from(20));
    assert_eq!(s.account_at_time(&a, 7 * 12 - 1).unwrap().unwrap().votes, U256::from(10));
    assert_eq!(s.account_at_time(&a, 7 * 12).unwrap().unwrap().votes, U256::from(20));
    assert_eq!(s.account(&a).unwrap().unwrap().votes, U256::from(20));
    let latest = s.latest_accounts().unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!((latest[0].0, latest[0].1.votes), (a, U256::from(20)));
}

fn event(kind: &str, account: u8, block: u64) -> govflow::streams::achievements::GovernanceEvent {
    let o = govflow::streams::achievements::Origin {
        chain_id: 1,
        governor: Address([1; 20]),
        block_number: block,
        block_hash: B256([block as u8; 32]),
        log_index: 0,
        tx_hash: B256([3; 32]),
        timestamp: block * 12,
    };
    govflow::streams::achievements::GovernanceEvent::new(kind, &o, Address([account; 20]), &U256::from(1), serde_json::json!({}))
}

fn outbox(kind: &str, account: u8, block: u64) -> Mutation {
    Mutation::Outbox { event: Box::new(event(kind, account, block)), achievement: true }
}

pub fn stats_count_votes_per_voter_and_day(s: Arc<dyn Store>) {
    let day = 86_400 / 12; // blocks per day at 12 s
    let mut v1 = vote(1, 10, 5, 2, 0);
    v1.timestamp = 0; // 1970-01-01
    let mut v2 = vote(2, 10, 5, 3, 0);
    v2.timestamp = 86_400; // 1970-01-02
    let mut v3 = vote(2, 11, 5, 3, 1);
    v3.timestamp = 86_400;
    let acct = |a: u8| Mutation::Account { account: Address([a; 20]), power: AccountPower { block_number: 3, timestamp: 36, ..Default::default() } };
    s.commit(&batch(
        1,
        3,
        vec![
            Mutation::Proposal(Box::new(proposal(1, ProposalStatus::Active, 1, 1))),
            Mutation::Proposal(Box::new(proposal(2, ProposalStatus::Active, 1, 1))),
            Mutation::Vote(Box::new(v1.clone())),
            Mutation::Vote(Box::new(v2.clone())),
            Mutation::Vote(Box::new(v3.clone())),
            acct(10),
            acct(11),
            acct(12),
        ],
        false,
    ))
    .unwrap();
    // The same records again, in a later batch and with a repeated account: nothing moves.
    s.commit(&batch(4, 4 + day, vec![Mutation::Vote(Box::new(v2)), Mutation::Vote(Box::new(v1)), acct(12)], false)).unwrap();
    let st = s.stats().unwrap();
    assert_eq!((st.votes, st.unique_voters, st.accounts, st.proposals), (3, 2, 3, 2));
    let days: Vec<(String, u64)> = st.votes_by_day.into_iter().collect();
    assert_eq!(days, vec![("1970-01-01".to_string(), 1), ("1970-01-02".to_string(), 2)]);
    assert_eq!(s.voter_vote_count(&Address([10; 20])).unwrap(), 2);
    assert_eq!(s.voter_vote_count(&Address([11; 20])).unwrap(), 1);
    assert_eq!(s.voter_vote_count(&Address([12; 20])).unwrap(), 0);
    // vote(pid, voter, ...) has support = voter % 3: voter 10 votes for, voter 11 abstains.
    assert_eq!(s.vote_counts(&U256::from(1)).unwrap(), VoteCounts { total: 1, for_: 1, ..Default::default() });
    assert_eq!(s.vote_counts(&U256::from(2)).unwrap(), VoteCounts { total: 2, for_: 1, abstain: 1, ..Default::default() });
    assert_eq!(s.vote_counts(&U256::from(3)).unwrap(), VoteCounts::default());
}

pub fn feed_publishes_final_events_once_and_retracts_orphans(s: Arc<dyn Store>) {
    s.commit(&batch(1, 2, vec![outbox("ProposalCreated", 7, 2)], true)).unwrap();
    // The chain's final block may be ahead of the store: what is committed later still goes out.
    assert_eq!(s.publish_final(3).unwrap().iter().map(|i| (i.seq, i.event.block_number)).collect::<Vec<_>>(), vec![(1, 2)]);
    s.commit(&batch(3, 4, vec![outbox("VoteCast", 7, 3), outbox("VoteCast", 8, 4)], true)).unwrap();
    let first = s.publish_final(3).unwrap();
    assert_eq!(first.iter().map(|i| (i.seq, i.event.block_number)).collect::<Vec<_>>(), vec![(2, 3)]);
    assert!(s.publish_final(3).unwrap().is_empty(), "published once");
    assert_eq!(s.publish_final(4).unwrap().iter().map(|i| i.seq).collect::<Vec<_>>(), vec![3]);
    assert_eq!(s.feed_position().unwrap(), 3);
    let mine = s.account_events(&Address([7; 20])).unwrap();
    assert_eq!(mine.iter().map(|(e, published)| (e.block_number, *published)).collect::<Vec<_>>(), vec![(2, true), (3, true)]);
    // A reorg deeper than the published blocks retracts what the new chain does not have.
    assert_eq!(s.rollback(2).unwrap().unwrap().block, 2);
    let feed = s.feed(0, 100).unwrap();
    let kinds: Vec<(u64, &str, u64)> = feed.iter().map(|i| (i.seq, i.item_type.as_str(), i.event.block_number)).collect();
    assert_eq!(kinds, vec![(1, "event", 2), (2, "event", 3), (3, "event", 4), (4, "retraction", 3), (5, "retraction", 4)]);
    assert_eq!(s.feed(3, 1).unwrap().iter().map(|i| i.seq).collect::<Vec<_>>(), vec![4]);
    assert_eq!(s.feed_position().unwrap(), 5);
    assert_eq!(s.account_events(&Address([7; 20])).unwrap().len(), 1);
    // The new chain's events are published from the rollback point on.
    s.commit(&batch(3, 4, vec![outbox("VoteCast", 9, 4)], true)).unwrap();
    let again = s.publish_final(4).unwrap();
    assert_eq!(again.iter().map(|i| (i.seq, i.event.account)).collect::<Vec<_>>(), vec![(6, Address([9; 20]))]);
}

macro_rules! store_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            #[test]
            fn batches_commit_atomically_with_the_cursor() {
                let (_g, s) = $make;
                super::batches_commit_atomically_with_the_cursor(s);
            }
            #[test]
            fn rollback_restores_everything_derived_from_orphaned_blocks() {
                let (_g, s) = $make;
                super::rollback_restores_everything_derived_from_orphaned_blocks(s);
            }
            #[test]
            fn rollback_of_everything_restarts_from_the_first_block() {
                let (_g, s) = $make;
                super::rollback_of_everything_restarts_from_the_first_block(s);
            }
            #[test]
            fn pruning_keeps_what_a_rollback_needs() {
                let (_g, s) = $make;
                super::pruning_keeps_what_a_rollback_needs(s);
            }
            #[test]
            fn rollback_refuses_unjournaled_blocks() {
                let (_g, s) = $make;
                super::rollback_refuses_unjournaled_blocks(s);
            }
            #[test]
            fn proposal_pages_follow_sort_order_and_filters() {
                let (_g, s) = $make;
                super::proposal_pages_follow_sort_order_and_filters(s);
            }
            #[test]
            fn vote_pages_and_replays() {
                let (_g, s) = $make;
                super::vote_pages_and_replays(s);
            }
            #[test]
            fn voting_power_by_block_and_time() {
                let (_g, s) = $make;
                super::voting_power_by_block_and_time(s);
            }
            #[test]
            fn stats_count_votes_per_voter_and_day() {
                let (_g, s) = $make;
                super::stats_count_votes_per_voter_and_day(s);
            }
            #[test]
            fn feed_publishes_final_events_once_and_retracts_orphans() {
                let (_g, s) = $make;
                super::feed_publishes_final_events_once_and_retracts_orphans(s);
            }
        }
    };
}

fn embedded() -> (tempfile::TempDir, Arc<dyn Store>) {
    let d = tempfile::tempdir().unwrap();
    let s = govflow::store::embedded::EmbeddedStore::open(d.path()).unwrap();
    (d, Arc::new(s))
}

store_suite!(embedded_store, embedded());

mod cql;

fn scylla() -> (cql::DropKeyspace, Arc<dyn Store>) {
    let ks = cql::fresh_keyspace("conf");
    let s = govflow::store::scylla::ScyllaStore::connect(&cql::config(&ks), true).unwrap();
    (cql::DropKeyspace(ks), Arc::new(s))
}

store_suite!(scylla_store, scylla());

/// What only the ScyllaDB backend needs: recovery of interrupted commits (no multi-table
/// transactions there), counter drift, and whole-history replays.
mod scylla_only {
    use super::*;
    use govflow::store::scylla::ScyllaStore;

    fn store() -> (cql::DropKeyspace, ScyllaStore, String) {
        let ks = cql::fresh_keyspace("only");
        let s = ScyllaStore::connect(&cql::config(&ks), true).unwrap();
        (cql::DropKeyspace(ks.clone()), s, ks)
    }

    fn exact(s: &ScyllaStore) {
        let r = s.reconcile(None).unwrap();
        assert_eq!((r.counters_corrected, r.drift), (0, 0), "counters match the vote records: {r:?}");
    }

    #[test]
    fn an_interrupted_reversible_commit_leaves_no_ghost_after_a_reorg() {
        let (_g, s, _) = store();
        s.commit(&batch(1, 2, vec![Mutation::Proposal(Box::new(proposal(1, ProposalStatus::Active, 1, 1)))], false)).unwrap();
        for step in ["journal", "rows", "votes", "counters"] {
            // The process dies during batch [3, 4] of a chain that then reorgs: the new chain
            // has another vote at the same position.
            s.set_failpoint(Some(step));
            let ghost = Mutation::Vote(Box::new(vote(1, 99, 7, 4, 0)));
            let ghost_power = Mutation::Account { account: Address([99; 20]), power: AccountPower { block_number: 4, ..Default::default() } };
            assert!(s.commit(&batch(3, 4, vec![ghost, ghost_power], true)).is_err(), "{step}");
            s.set_failpoint(None);
            s.commit(&batch(3, 4, vec![Mutation::Vote(Box::new(vote(1, 98, 5, 4, 0)))], true)).unwrap();
            assert!(s.vote(&U256::from(1), &Address([99; 20])).unwrap().is_none(), "{step}: ghost vote");
            assert!(s.account(&Address([99; 20])).unwrap().is_none(), "{step}: ghost account");
            assert_eq!(s.vote(&U256::from(1), &Address([98; 20])).unwrap().unwrap().weight, U256::from(5));
            let st = s.stats().unwrap();
            assert_eq!((st.votes, st.unique_voters, st.accounts), (1, 1, 0), "{step}");
            assert_eq!(s.voter_vote_count(&Address([99; 20])).unwrap(), 0, "{step}");
            assert_eq!(s.voter_vote_count(&Address([98; 20])).unwrap(), 1, "{step}");
            exact(&s);
            // Back to block 2 for the next step.
            assert_eq!(s.rollback(2).unwrap().unwrap().block, 2);
            assert_eq!(s.stats().unwrap().votes, 0);
            exact(&s);
        }
    }

    #[test]
    fn an_interrupted_final_commit_is_retried_without_double_counting() {
        let (_g, s, _) = store();
        let mut muts = vec![Mutation::Proposal(Box::new(proposal(1, ProposalStatus::Active, 1, 1)))];
        for v in 0..20u8 {
            muts.push(Mutation::Vote(Box::new(vote(1, 10 + v, 3, 2 + v as u64 / 4, v as u64))));
        }
        for step in ["rows", "votes", "counters"] {
            s.set_failpoint(Some(step));
            assert!(s.commit(&batch(1, 10, muts.clone(), false)).is_err());
        }
        s.set_failpoint(None);
        s.commit(&batch(1, 10, muts, false)).unwrap();
        let st = s.stats().unwrap();
        assert_eq!((st.votes, st.unique_voters), (20, 20));
        assert_eq!(st.events, 10);
        exact(&s);
    }

    #[test]
    fn a_conditional_vote_batch_with_some_rows_present_inserts_the_others_once() {
        let (_g, s, ks) = store();
        let votes = |n: u8| -> Vec<Mutation> { (0..n).map(|v| Mutation::Vote(Box::new(vote(1, 10 + v, 3, 2, v as u64)))).collect() };
        let mut first = vec![Mutation::Proposal(Box::new(proposal(1, ProposalStatus::Active, 1, 1)))];
        first.extend(votes(7));
        s.commit(&batch(1, 3, first, false)).unwrap();
        // The cursor is lost; the same block now arrives with 30 votes, 7 of them stored.
        cql::raw(&[format!("UPDATE {ks}.listener_cursors SET block_number = null, block_hash = null, events = 0 WHERE name = 'listener'")]);
        s.commit(&batch(1, 3, votes(30), false)).unwrap();
        let st = s.stats().unwrap();
        assert_eq!((st.votes, st.unique_voters), (30, 30));
        assert_eq!(s.vote_counts(&U256::from(1)).unwrap().total, 30);
        exact(&s);
    }

    #[test]
    fn drifted_counters_are_reconciled() {
        let (_g, s, ks) = store();
        let mut muts = vec![Mutation::Proposal(Box::new(proposal(1, ProposalStatus::Active, 1, 1)))];
        for v in 0..6u8 {
            muts.push(Mutation::Vote(Box::new(vote(1, 10 + v, 3, 2, v as u64))));
        }
        s.commit(&batch(1, 3, muts, false)).unwrap();
        let pid = format!("0x{}", hex::encode(govflow::domain::u256_be(&U256::from(1))));
        cql::raw(&[
            format!("UPDATE {ks}.global_counters SET value = value + 5 WHERE name = 'votes'"),
            format!("UPDATE {ks}.proposal_vote_counters SET votes = votes - 2, for_votes = for_votes + 1 WHERE proposal_id = {pid}"),
            format!("UPDATE {ks}.voter_vote_counters SET votes = votes + 1 WHERE voter = 0x{}", hex::encode([10u8; 20])),
        ]);
        assert_eq!(s.stats().unwrap().votes, 11, "the drift is visible");
        let one = s.reconcile(Some(&U256::from(1))).unwrap();
        assert_eq!((one.votes_scanned, one.counters_corrected, one.drift), (6, 2, 3), "{one:?}");
        let all = s.reconcile(None).unwrap();
        assert_eq!((all.counters_corrected, all.drift), (2, 6), "global votes and one voter: {all:?}");
        assert_eq!(s.stats().unwrap().votes, 6);
        assert_eq!(s.voter_vote_count(&Address([10; 20])).unwrap(), 1);
        exact(&s);
    }

    #[test]
    fn every_event_twice_in_restarted_batches_keeps_tallies_exact() {
        let (_g, s, ks) = store();
        // 8 proposals x 25 voters, 200 vote records over 40 blocks.
        let mut all = Vec::new();
        for p in 1..=8u64 {
            all.push((p, Mutation::Proposal(Box::new(proposal(p, ProposalStatus::Active, 1, p)))));
        }
        for n in 0..200u64 {
            let block = 10 + n / 5;
            all.push((block, Mutation::Vote(Box::new(vote(1 + n % 8, 20 + (n / 8) as u8, 1 + n % 13, block, n % 5)))));
        }
        let split = |bounds: &[u64]| -> Vec<Batch> {
            let mut out = Vec::new();
            let mut from = 1;
            for &to in bounds {
                let muts = all.iter().filter(|(b, _)| *b >= from && *b <= to).map(|(_, m)| m.clone()).collect();
                out.push(batch(from, to, muts, false));
                from = to + 1;
            }
            out
        };
        for b in split(&[12, 25, 49]) {
            s.commit(&b).unwrap();
        }
        let first = s.stats().unwrap();
        assert_eq!((first.votes, first.unique_voters), (200, 25));
        // The cursor is lost (a restart from scratch): every event is applied again, in
        // batches cut elsewhere.
        cql::raw(&[format!("UPDATE {ks}.listener_cursors SET block_number = null, block_hash = null, events = 0 WHERE name = 'listener'")]);
        for b in split(&[3, 17, 18, 40, 49]) {
            s.commit(&b).unwrap();
        }
        let again = s.stats().unwrap();
        assert_eq!(again, first, "tallies after the replay");
        for v in 0..25u8 {
            assert_eq!(s.voter_vote_count(&Address([20 + v; 20])).unwrap(), 8);
        }
        for p in 1..=8u64 {
            let votes =
                s.proposal_votes(&U256::from(p), &VoteQuery { sort: VoteSort::Block, descending: false, support: None, after: None, limit: 1000 }).unwrap();
            assert_eq!(votes.items.len(), 25);
            assert_eq!(s.reconcile(Some(&U256::from(p))).unwrap().counters_corrected, 0);
        }
        exact(&s);
    }
}
