//! The `/v1` read handlers, the probes and `/metrics` (inbound events are [`super::ingest`]).

use std::sync::atomic::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use warp::http::StatusCode;

use super::problem::Problem;
use super::views::{self, ExecutionState};
use super::{params, view, ApiState, Req};
use crate::domain::{parse_u256, Address, ClockMode, Proposal, ProposalStatus, UserVotingPower, Vote, U256};
use crate::store::{ProposalQuery, ProposalSort, VoteQuery, VoteSort};

type Resp = Result<warp::reply::Response, Problem>;

fn limit(state: &ApiState, req: &Req<'_>) -> Result<usize, Problem> {
    match req.param("limit") {
        None => Ok(state.http.default_page_size),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 && n <= state.http.max_page_size => Ok(n),
            _ => Err(Problem::bad_param("limit", format!("limit must be an integer from 1 to {}", state.http.max_page_size))),
        },
    }
}

fn order(req: &Req<'_>, default_desc: bool) -> Result<bool, Problem> {
    match req.param("order") {
        None => Ok(default_desc),
        Some("asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(o) => Err(Problem::bad_param("order", format!("order must be asc or desc, not {o:?}"))),
    }
}

/// Opaque cursors: a tag byte (route, sort and direction) then the keyset key.
fn encode_cursor(tag: u8, key: &[u8]) -> String {
    let mut b = vec![tag];
    b.extend_from_slice(key);
    URL_SAFE_NO_PAD.encode(b)
}

fn decode_cursor(req: &Req<'_>, tag: u8) -> Result<Option<Vec<u8>>, Problem> {
    let Some(c) = req.param("cursor") else { return Ok(None) };
    let b = URL_SAFE_NO_PAD.decode(c).map_err(|_| Problem::bad_param("cursor", "cursor is not one this API issued"))?;
    match b.split_first() {
        Some((t, rest)) if *t == tag => Ok(Some(rest.to_vec())),
        Some(_) => Err(Problem::bad_param("cursor", "cursor belongs to another listing, sort or order; start without it")),
        None => Err(Problem::bad_param("cursor", "empty cursor")),
    }
}

fn proposal_id(req: &Req<'_>) -> Result<U256, Problem> {
    let s = req.segments.get(2).copied().unwrap_or("");
    parse_u256(s).map_err(|e| Problem::bad_param("proposalId", format!("{s:?}: {e}")))
}

fn address(req: &Req<'_>) -> Result<Address, Problem> {
    let s = req.segments.get(2).copied().unwrap_or("");
    Address::parse(s).map_err(|e| Problem::bad_param("address", format!("{s:?} is not an address: {e}")))
}

fn clock_mode(state: &ApiState) -> Result<ClockMode, Problem> {
    Ok(state.store.info()?.map_or(ClockMode::BlockNumber, |i| i.clock_mode))
}

/// A proposal as served; `fin` is the finalized block as the caller read it.
pub(crate) fn proposal_view(p: Proposal, mode: ClockMode, fin: u64) -> views::ProposalView {
    let provisional = p.updated_block > fin;
    views::ProposalView::new(p, mode, provisional)
}

/// A vote as served: the record plus the voter's weight breakdown at the proposal's snapshot;
/// `fin` is the finalized block as the caller read it.
pub(crate) fn vote_view(state: &ApiState, v: &Vote, snapshot: Option<(u64, ClockMode)>, fin: u64) -> Result<views::VoteView, Problem> {
    let weight_breakdown = match snapshot {
        Some((s, mode)) => {
            let cp = match mode {
                ClockMode::BlockNumber => state.store.account_at_block(&v.voter, s)?,
                ClockMode::Timestamp => state.store.account_at_time(&v.voter, s)?,
            }
            .unwrap_or_default();
            Some(views::WeightBreakdown::from(&UserVotingPower::from_power(v.voter, &cp, cp.block_number, s)))
        }
        None => None,
    };
    Ok(views::VoteView { vote: v.clone(), provisional: v.block_number > fin, weight_breakdown })
}

fn snapshot_of(state: &ApiState, id: &U256, mode: ClockMode) -> Result<Option<(u64, ClockMode)>, Problem> {
    Ok(state.store.proposal(id)?.map(|p| (p.start_block, mode)))
}

fn u64_param(req: &Req<'_>, name: &str) -> Result<Option<u64>, Problem> {
    req.param(name).map(|s| s.parse::<u64>().map_err(|_| Problem::bad_param(name, format!("{name} must be a non-negative integer")))).transpose()
}

fn time_param(req: &Req<'_>, name: &str) -> Result<Option<u64>, Problem> {
    req.param(name)
        .map(|s| crate::domain::time::parse(s).ok_or_else(|| Problem::bad_param(name, format!("{name} must be unix seconds or an RFC 3339 time"))))
        .transpose()
}

/// `GET /v1/proposals`
pub fn list_proposals(state: &ApiState, req: &Req<'_>) -> Resp {
    req.accept::<params::ListProposalsQuery>()?;
    let statuses = match req.param("status") {
        None => vec![],
        Some(s) => s
            .split(',')
            .map(|x| {
                ProposalStatus::parse(x.trim()).ok_or_else(|| {
                    Problem::bad_param(
                        "status",
                        format!("unknown status {x:?}; one or more of Pending, Active, Canceled, Defeated, Succeeded, Queued, Expired, Executed"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let proposer =
        req.param("proposer").map(|s| Address::parse(s).map_err(|e| Problem::bad_param("proposer", format!("{s:?} is not an address: {e}")))).transpose()?;
    let sort = match req.param("sort") {
        None => ProposalSort::CreatedAt,
        Some(s) => ProposalSort::parse(s)
            .ok_or_else(|| Problem::bad_param("sort", format!("unknown sort {s:?}; one of createdAt, startBlock, endBlock, forVotes, totalVotes")))?,
    };
    let descending = order(req, true)?;
    let tag = 0x10 | (sort as u8) << 1 | descending as u8;
    let q = ProposalQuery {
        statuses,
        proposer,
        created_from: time_param(req, "createdFrom")?,
        created_to: time_param(req, "createdTo")?,
        end_from: u64_param(req, "endFrom")?,
        end_to: u64_param(req, "endTo")?,
        sort,
        descending,
        after: decode_cursor(req, tag)?,
        limit: limit(state, req)?,
    };
    let page = state.store.list_proposals(&q)?;
    let mode = clock_mode(state)?;
    let fin = state.status.finalized();
    let items = page.items.into_iter().map(|p| proposal_view(p, mode, fin)).collect();
    view(req, &views::ProposalPage { items, next_cursor: page.next.map(|k| encode_cursor(tag, &k)) })
}

/// `GET /v1/proposals/{proposalId}`
pub fn proposal(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    let id = proposal_id(req)?;
    let p = state.store.proposal(&id)?.ok_or_else(|| Problem::not_found(format!("no proposal {id}")))?;
    let summary = proposal_view(p, clock_mode(state)?, state.status.finalized());
    view(req, &views::ProposalDetailView { summary, history: state.store.history(&id)?, vote_counts: state.store.vote_counts(&id)? })
}

fn vote_query(state: &ApiState, req: &Req<'_>, route: u8) -> Result<(VoteQuery, u8), Problem> {
    let sort = match req.param("sort") {
        None | Some("block") => VoteSort::Block,
        Some("weight") => VoteSort::Weight,
        Some(s) => return Err(Problem::bad_param("sort", format!("unknown sort {s:?}; one of block, weight"))),
    };
    let descending = order(req, true)?;
    let support = req
        .param("support")
        .map(|s| match s {
            "0" | "against" => Ok(0u8),
            "1" | "for" => Ok(1),
            "2" | "abstain" => Ok(2),
            _ => Err(Problem::bad_param("support", "support must be 0/against, 1/for or 2/abstain")),
        })
        .transpose()?;
    let tag = route | (sort as u8) << 1 | descending as u8;
    Ok((VoteQuery { sort, descending, support, after: decode_cursor(req, tag)?, limit: limit(state, req)? }, tag))
}

/// `GET /v1/proposals/{proposalId}/votes`
pub fn proposal_votes(state: &ApiState, req: &Req<'_>) -> Resp {
    req.accept::<params::ProposalVotesQuery>()?;
    let id = proposal_id(req)?;
    let (q, tag) = vote_query(state, req, 0x20)?;
    let mode = clock_mode(state)?;
    let Some(snapshot) = snapshot_of(state, &id, mode)? else {
        return Err(Problem::not_found(format!("no proposal {id}")));
    };
    let page = state.store.proposal_votes(&id, &q)?;
    let fin = state.status.finalized();
    let items = page.items.iter().map(|v| vote_view(state, v, Some(snapshot), fin)).collect::<Result<_, Problem>>()?;
    view(req, &views::VotePage { items, next_cursor: page.next.map(|k| encode_cursor(tag, &k)) })
}

/// `GET /v1/users/{address}/votes`
pub fn user_votes(state: &ApiState, req: &Req<'_>) -> Resp {
    req.accept::<params::UserVotesQuery>()?;
    let a = address(req)?;
    let (q, tag) = vote_query(state, req, 0x40)?;
    let page = state.store.voter_votes(&a, &q)?;
    let mode = clock_mode(state)?;
    let fin = state.status.finalized();
    let items = page.items.iter().map(|v| vote_view(state, v, snapshot_of(state, &v.proposal_id, mode)?, fin)).collect::<Result<_, Problem>>()?;
    view(req, &views::VotePage { items, next_cursor: page.next.map(|k| encode_cursor(tag, &k)) })
}

/// `GET /v1/users/{address}/voting-power`
pub fn voting_power(state: &ApiState, req: &Req<'_>) -> Resp {
    req.accept::<params::VotingPowerQuery>()?;
    let a = address(req)?;
    let indexed = state.status.indexed.load(Ordering::Relaxed);
    let mode = clock_mode(state)?;
    let block = u64_param(req, "block")?;
    let pid = req.param("proposalId").map(|s| parse_u256(s).map_err(|e| Problem::bad_param("proposalId", format!("{s:?}: {e}")))).transpose()?;
    if block.is_some() && pid.is_some() {
        return Err(Problem::bad_param("block", "give either block or proposalId, not both"));
    }
    let vp = if let Some(pid) = pid {
        let p = state.store.proposal(&pid)?.ok_or_else(|| Problem::not_found(format!("no proposal {pid}")))?;
        let s = p.start_block;
        let cp = match mode {
            ClockMode::BlockNumber => state.store.account_at_block(&a, s)?,
            ClockMode::Timestamp => state.store.account_at_time(&a, s)?,
        }
        .unwrap_or_default();
        let block = if mode == ClockMode::BlockNumber { s } else { cp.block_number };
        let mut vp = UserVotingPower::from_power(a, &cp, block, s);
        vp.proposal_id = Some(pid);
        vp
    } else if let Some(b) = block {
        if b > indexed {
            return Err(Problem::bad_param("block", format!("block {b} is not indexed yet (indexed up to {indexed})")));
        }
        let cp = state.store.account_at_block(&a, b)?.unwrap_or_default();
        let tp = if mode == ClockMode::BlockNumber { b } else { cp.timestamp };
        UserVotingPower::from_power(a, &cp, b, tp)
    } else {
        let cp = state.store.account(&a)?.unwrap_or_default();
        let ts = state.store.block(indexed)?.map_or(cp.timestamp, |b| b.timestamp);
        let tp = if mode == ClockMode::BlockNumber { indexed } else { ts };
        UserVotingPower::from_power(a, &cp, indexed, tp)
    };
    let provisional = vp.block_number > state.status.finalized();
    view(req, &views::VotingPowerView { power: vp, provisional })
}

/// `GET /v1/delegates`: accounts by the weight the governor counts now (token votes plus NFT
/// bonus), with the number of other accounts delegating to them.
pub fn delegates(state: &ApiState, req: &Req<'_>) -> Resp {
    req.accept::<params::DelegatesQuery>()?;
    let limit = limit(state, req)?;
    let after = decode_cursor(req, 0x60)?;
    let accounts = state.store.latest_accounts()?;
    let mut delegators: std::collections::HashMap<Address, u64> = std::collections::HashMap::new();
    for (a, p) in &accounts {
        if let Some(d) = p.delegate.filter(|d| d != a) {
            *delegators.entry(d).or_default() += 1;
        }
    }
    // Keyset on (total weight, address), descending.
    let mut rows: Vec<(Vec<u8>, &Address, &crate::domain::AccountPower)> = accounts
        .iter()
        .filter(|(a, p)| !p.votes.is_zero() || !p.nft_bonus.is_zero() || delegators.contains_key(a))
        .map(|(a, p)| {
            let total = p.votes.saturating_add(p.nft_bonus);
            let mut k = crate::domain::u256_be(&total).to_vec();
            k.extend_from_slice(&a.0);
            (k, a, p)
        })
        .collect();
    rows.sort_by(|x, y| y.0.cmp(&x.0));
    if let Some(after) = &after {
        rows.retain(|(k, _, _)| k < after);
    }
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more { rows.last().map(|(k, _, _)| encode_cursor(0x60, k)) } else { None };
    let items = rows
        .iter()
        .map(|(_, a, p)| views::Delegate {
            address: **a,
            total_weight: p.votes.saturating_add(p.nft_bonus).to_string(),
            votes: p.votes.to_string(),
            nft_bonus: p.nft_bonus.to_string(),
            balance: p.balance.to_string(),
            delegators: delegators.get(*a).copied().unwrap_or(0),
            self_delegated: p.delegate == Some(**a),
            delegate: p.delegate,
        })
        .collect();
    view(req, &views::DelegatePage { items, next_cursor: next })
}

/// `GET /v1/events/governance`: the feed of governance events for the achievement system, in
/// order; each event appears once it is final, and a retraction follows an event a deeper reorg
/// removed. `after` is the last `seq` seen.
pub fn governance_events(state: &ApiState, req: &Req<'_>) -> Resp {
    req.accept::<params::GovernanceEventsQuery>()?;
    let after = u64_param(req, "after")?.unwrap_or(0);
    let limit = limit(state, req)?;
    let items = state.store.feed(after, limit)?;
    let last = items.last().map_or(after, |i| i.seq);
    view(req, &views::GovernanceEventPage { items, next_after: last })
}

/// `GET /v1/users/{address}/governance-achievements`: first proposal, first vote, executed
/// proposals and participation streaks, each with the event that earned it.
pub fn governance_achievements(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    let a = address(req)?;
    let events = state.store.account_events(&a)?;
    let mut out = Vec::new();
    let entry = |name: &str, e: &crate::domain::achievement::GovernanceEvent, fin: bool| views::Achievement {
        achievement: name.to_string(),
        r#final: fin,
        earned_by: e.clone(),
    };
    use crate::domain::achievement::kind;
    if let Some((e, f)) = events.iter().find(|(e, _)| e.kind == kind::PROPOSAL_CREATED) {
        out.push(entry("firstProposal", e, *f));
    }
    if let Some((e, f)) = events.iter().find(|(e, _)| e.kind == kind::VOTE_CAST) {
        out.push(entry("firstVote", e, *f));
    }
    for (e, f) in events.iter().filter(|(e, _)| e.kind == kind::PROPOSAL_EXECUTED) {
        out.push(entry("executedProposal", e, *f));
    }
    for (e, f) in events.iter().filter(|(e, _)| e.kind == kind::PARTICIPATION_STREAK) {
        let n = e.data["streak"].as_u64().unwrap_or(0);
        out.push(entry(&format!("participationStreak{n}"), e, *f));
    }
    let proposals = events.iter().filter(|(e, _)| e.kind == kind::PROPOSAL_CREATED).count();
    let votes = state.store.voter_vote_count(&a)?;
    view(req, &views::GovernanceAchievements { user: a, proposals_created: proposals as u64, votes_cast: votes, achievements: out })
}

/// `GET /v1/users/{address}/governance-benefits`
pub fn governance_benefits(state: &ApiState, req: &Req<'_>) -> Resp {
    req.accept::<params::BenefitsQuery>()?;
    let a = address(req)?;
    let indexed = state.status.indexed.load(Ordering::Relaxed);
    let block = u64_param(req, "block")?;
    let cp = match block {
        Some(b) if b > indexed => return Err(Problem::bad_param("block", format!("block {b} is not indexed yet (indexed up to {indexed})"))),
        Some(b) => state.store.account_at_block(&a, b)?,
        None => state.store.account(&a)?,
    }
    .unwrap_or_default();
    let at = block.unwrap_or(indexed);
    let v = views::GovernanceBenefits {
        user: a,
        nft_bonus: cp.nft_bonus.to_string(),
        fee_discount_bps: cp.fee_discount_bps.to_string(),
        priority_boost: cp.priority_boost.to_string(),
        benefit_executor: state.store.info()?.and_then(|i| i.benefit_executor),
        block_number: at,
        provisional: at > state.status.finalized(),
    };
    view(req, &v)
}

/// `GET /v1/proposals/{proposalId}/execution-status`
pub fn execution_status(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    let id = proposal_id(req)?;
    let p = state.store.proposal(&id)?.ok_or_else(|| Problem::not_found(format!("no proposal {id}")))?;
    let op = match p.timelock_operation_id {
        Some(op) => state.store.timelock_op(&op)?,
        None => None,
    };
    let indexed = state.status.indexed.load(Ordering::Relaxed);
    let now = state.store.block(indexed)?.map(|b| b.timestamp);
    let grace = state.store.info()?.and_then(|i| i.grace_period_secs);
    let execution_state = match p.status {
        ProposalStatus::Executed => ExecutionState::Executed,
        ProposalStatus::Canceled => ExecutionState::Canceled,
        ProposalStatus::Expired => ExecutionState::Expired,
        ProposalStatus::Defeated => ExecutionState::Defeated,
        ProposalStatus::Pending | ProposalStatus::Active => ExecutionState::Voting,
        ProposalStatus::Succeeded => ExecutionState::AwaitingQueue,
        ProposalStatus::Queued => match (p.eta, now) {
            (Some(eta), Some(now)) if now >= eta => ExecutionState::Ready,
            _ => ExecutionState::Waiting,
        },
    };
    let timelock = state.store.info()?.and_then(|i| i.timelock);
    let v = views::ExecutionStatus {
        proposal_id: id.to_string(),
        status: p.status,
        execution_state,
        eta: p.eta.map(crate::domain::time::format),
        expires_at: match (p.eta, grace) {
            (Some(e), Some(g)) => Some(crate::domain::time::format(e + g)),
            _ => None,
        },
        timelock,
        timelock_operation_id: p.timelock_operation_id,
        operation: op,
        executed_at: p.executed_at.map(crate::domain::time::format),
        targets: p.targets,
        calldatas: p.calldatas,
    };
    view(req, &v)
}

/// `GET /v1/proposals/stats`
pub fn stats(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    let s = state.store.stats()?;
    let get = |k: &str| s.by_status.get(k).copied().unwrap_or(0);
    let passed = get("Succeeded") + get("Queued") + get("Executed") + get("Expired");
    let decided = passed + get("Defeated");
    let v = views::Stats {
        active_proposals: get("Active"),
        voter_turnout: if s.accounts > 0 { s.unique_voters as f64 / s.accounts as f64 } else { 0.0 },
        average_votes_per_proposal: if s.proposals > 0 { s.votes as f64 / s.proposals as f64 } else { 0.0 },
        pass_rate: if decided > 0 { passed as f64 / decided as f64 } else { 0.0 },
        execution_rate: if passed > 0 { get("Executed") as f64 / passed as f64 } else { 0.0 },
        proposals: s.proposals,
        by_status: s.by_status,
        votes: s.votes,
        unique_voters: s.unique_voters,
        accounts: s.accounts,
        events_indexed: s.events,
        votes_by_day: s.votes_by_day,
    };
    view(req, &v)
}

/// `GET /v1/status`
pub fn status(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    let st = &state.status;
    let info = state.store.info()?;
    let head = st.head.load(Ordering::Relaxed);
    let indexed = st.indexed.load(Ordering::Relaxed);
    let v = views::Status {
        chain_id: st.chain_id.load(Ordering::Relaxed),
        governor: info.as_ref().map(|i| i.governor),
        governor_name: info.as_ref().map(|i| i.name.clone()),
        vote_source: info.as_ref().map(|i| i.vote_source),
        token: info.as_ref().map(|i| i.token),
        benefit_executor: info.as_ref().and_then(|i| i.benefit_executor),
        achievement_nft: info.as_ref().and_then(|i| i.achievement_nft),
        timelock: info.as_ref().and_then(|i| i.timelock),
        clock_mode: info.as_ref().map(|i| i.clock_mode),
        counting_mode: info.as_ref().map(|i| i.counting_mode.clone()),
        voting_delay: info.as_ref().map(|i| i.voting_delay),
        voting_period: info.as_ref().map(|i| i.voting_period),
        proposal_threshold: info.as_ref().map(|i| i.proposal_threshold.to_string()),
        start_block: st.start_block.load(Ordering::Relaxed),
        head_block: head,
        indexed_block: indexed,
        finalized_block: st.finalized(),
        confirmations: st.confirmations.load(Ordering::Relaxed),
        lag_blocks: head.saturating_sub(indexed),
        caught_up: st.caught_up.load(Ordering::Relaxed),
        rpc_reachable: st.rpc_ok.load(Ordering::Relaxed),
        reorgs_handled: st.reorgs.load(Ordering::Relaxed),
    };
    view(req, &v)
}

/// `GET /healthz`: the process answers.
pub fn healthz(_state: &ApiState, req: &Req<'_>) -> Resp {
    view(req, &views::Health { status: "ok" })
}

/// `GET /readyz`: caught up with the head and the node reachable.
pub fn readyz(state: &ApiState, req: &Req<'_>) -> Resp {
    let caught_up = state.status.caught_up.load(Ordering::Relaxed);
    let rpc = state.status.rpc_ok.load(Ordering::Relaxed);
    let bus = state.bus.healthy();
    if caught_up && rpc && bus {
        view(req, &views::Ready { status: "ready" })
    } else {
        let why = if !bus {
            "the bus (NATS) is unreachable"
        } else if !rpc {
            "the chain node is unreachable"
        } else {
            "backfill in progress"
        };
        let mut r = Problem::unavailable(why).response();
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        Ok(r)
    }
}

/// `GET /metrics`: Prometheus text format.
pub fn metrics(state: &ApiState, _req: &Req<'_>) -> Resp {
    let body = state.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    let mut r = warp::reply::Response::new(body.into());
    r.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("text/plain; version=0.0.4"));
    Ok(r)
}
