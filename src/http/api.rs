//! The `/v1` handlers: the reads, and `POST /v1/events/governance` (inbound governance events
//! other systems send, published on the bus).

use std::sync::atomic::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use warp::http::StatusCode;

use super::problem::Problem;
use super::{json, ApiState, Body, Req};
use crate::domain::{parse_u256, Address, ClockMode, Proposal, ProposalStatus, UserVotingPower, Vote, U256};
use crate::store::{ProposalQuery, ProposalSort, VoteQuery, VoteSort};

type Resp = Result<warp::reply::Response, Problem>;

const PROPOSAL_FIELDS: &[&str] = &[
    "id",
    "proposalId",
    "title",
    "description",
    "proposer",
    "startBlock",
    "endBlock",
    "originalEndBlock",
    "status",
    "forVotes",
    "againstVotes",
    "abstainVotes",
    "voteCount",
    "quorum",
    "targets",
    "values",
    "signatures",
    "calldatas",
    "eta",
    "timelockOperationId",
    "created",
    "createdAt",
    "updatedAt",
    "updatedBlock",
    "executedAt",
    "metadataURI",
    "totalVotes",
    "provisional",
    "clockMode",
    "history",
    "voteCounts",
];
const VOTE_FIELDS: &[&str] = &[
    "id",
    "proposalId",
    "voter",
    "support",
    "weight",
    "reason",
    "params",
    "blockNumber",
    "blockHash",
    "logIndex",
    "transactionHash",
    "timestamp",
    "provisional",
    "weightBreakdown",
];

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

fn fields(req: &Req<'_>, allowed: &[&str]) -> Result<Option<Vec<String>>, Problem> {
    let Some(f) = req.param("fields") else { return Ok(None) };
    let list: Vec<String> = f.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if list.is_empty() {
        return Err(Problem::bad_param("fields", "fields must name at least one field"));
    }
    for name in &list {
        if !allowed.contains(&name.as_str()) {
            return Err(Problem::bad_param("fields", format!("unknown field {name:?}; known: {}", allowed.join(", "))));
        }
    }
    Ok(Some(list))
}

fn project(v: Value, f: &Option<Vec<String>>) -> Value {
    match (v, f) {
        (Value::Object(o), Some(f)) => {
            let mut out = Map::new();
            for k in f {
                if let Some(x) = o.get(k) {
                    out.insert(k.clone(), x.clone());
                }
            }
            Value::Object(out)
        }
        (v, _) => v,
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

pub(crate) fn proposal_json(state: &ApiState, p: &Proposal, mode: ClockMode) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("totalVotes".into(), Value::String(p.total_votes().to_string()));
        o.insert("provisional".into(), Value::Bool(p.updated_block > state.status.finalized()));
        o.insert("clockMode".into(), serde_json::to_value(mode).unwrap_or(Value::Null));
    }
    v
}

/// A vote as served: the record plus the voter's weight breakdown at the proposal's snapshot.
pub(crate) fn vote_json(state: &ApiState, v: &Vote, snapshot: Option<(u64, ClockMode)>) -> Result<Value, Problem> {
    let mut j = serde_json::to_value(v).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut j {
        o.insert("provisional".into(), Value::Bool(v.block_number > state.status.finalized()));
        if let Some((s, mode)) = snapshot {
            let cp = match mode {
                ClockMode::BlockNumber => state.store.account_at_block(&v.voter, s)?,
                ClockMode::Timestamp => state.store.account_at_time(&v.voter, s)?,
            }
            .unwrap_or_default();
            let vp = UserVotingPower::from_power(v.voter, &cp, cp.block_number, s);
            o.insert(
                "weightBreakdown".into(),
                json!({
                    "baseWeight": vp.base_weight.to_string(),
                    "delegatedWeight": vp.delegated_weight.to_string(),
                    "nftBonus": vp.nft_bonus.to_string(),
                    "totalWeight": vp.total_weight.to_string(),
                }),
            );
        }
    }
    Ok(j)
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
    req.only(&["status", "proposer", "createdFrom", "createdTo", "endFrom", "endTo", "sort", "order", "cursor", "limit", "fields"])?;
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
    let f = fields(req, PROPOSAL_FIELDS)?;
    let page = state.store.list_proposals(&q)?;
    let mode = clock_mode(state)?;
    let items: Vec<Value> = page.items.iter().map(|p| project(proposal_json(state, p, mode), &f)).collect();
    Ok(json(&json!({ "items": items, "nextCursor": page.next.map(|k| encode_cursor(tag, &k)) })))
}

/// `GET /v1/proposals/{proposalId}`
pub fn proposal(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&["fields"])?;
    let id = proposal_id(req)?;
    let f = fields(req, PROPOSAL_FIELDS)?;
    let p = state.store.proposal(&id)?.ok_or_else(|| Problem::not_found(format!("no proposal {id}")))?;
    let mut v = proposal_json(state, &p, clock_mode(state)?);
    if let Value::Object(o) = &mut v {
        o.insert("history".into(), serde_json::to_value(state.store.history(&id)?).unwrap_or(Value::Null));
        let c = state.store.vote_counts(&id)?;
        o.insert("voteCounts".into(), json!({ "total": c.total, "against": c.against, "for": c.for_, "abstain": c.abstain, "fractional": c.fractional }));
    }
    Ok(json(&project(v, &f)))
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
    req.only(&["sort", "order", "support", "cursor", "limit", "fields"])?;
    let id = proposal_id(req)?;
    let (q, tag) = vote_query(state, req, 0x20)?;
    let f = fields(req, VOTE_FIELDS)?;
    let mode = clock_mode(state)?;
    let Some(snapshot) = snapshot_of(state, &id, mode)? else {
        return Err(Problem::not_found(format!("no proposal {id}")));
    };
    let page = state.store.proposal_votes(&id, &q)?;
    let items = page.items.iter().map(|v| Ok(project(vote_json(state, v, Some(snapshot))?, &f))).collect::<Result<Vec<Value>, Problem>>()?;
    Ok(json(&json!({ "items": items, "nextCursor": page.next.map(|k| encode_cursor(tag, &k)) })))
}

/// `GET /v1/users/{address}/votes`
pub fn user_votes(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&["order", "cursor", "limit", "fields"])?;
    let a = address(req)?;
    let (q, tag) = vote_query(state, req, 0x40)?;
    let f = fields(req, VOTE_FIELDS)?;
    let page = state.store.voter_votes(&a, &q)?;
    let mode = clock_mode(state)?;
    let items =
        page.items.iter().map(|v| Ok(project(vote_json(state, v, snapshot_of(state, &v.proposal_id, mode)?)?, &f))).collect::<Result<Vec<Value>, Problem>>()?;
    Ok(json(&json!({ "items": items, "nextCursor": page.next.map(|k| encode_cursor(tag, &k)) })))
}

/// `GET /v1/users/{address}/voting-power`
pub fn voting_power(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&["block", "proposalId", "fields"])?;
    let a = address(req)?;
    let indexed = state.status.indexed.load(Ordering::Relaxed);
    let mode = clock_mode(state)?;
    let block = u64_param(req, "block")?;
    let pid = req.param("proposalId").map(|s| parse_u256(s).map_err(|e| Problem::bad_param("proposalId", format!("{s:?}: {e}")))).transpose()?;
    if block.is_some() && pid.is_some() {
        return Err(Problem::bad_param("block", "give either block or proposalId, not both"));
    }
    let f = fields(
        req,
        &[
            "user",
            "proposalId",
            "baseWeight",
            "nftBonus",
            "delegatedWeight",
            "totalWeight",
            "balance",
            "delegate",
            "blockNumber",
            "timepoint",
            "timestamp",
            "provisional",
        ],
    )?;
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
    let mut v = serde_json::to_value(&vp).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("provisional".into(), Value::Bool(vp.block_number > state.status.finalized()));
    }
    Ok(json(&project(v, &f)))
}

/// `GET /v1/delegates`: accounts by the weight the governor counts now (token votes plus NFT
/// bonus), with the number of other accounts delegating to them.
pub fn delegates(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&["cursor", "limit", "fields"])?;
    let limit = limit(state, req)?;
    let after = decode_cursor(req, 0x60)?;
    let f = fields(req, &["address", "totalWeight", "votes", "nftBonus", "balance", "delegators", "selfDelegated", "delegate"])?;
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
    let items: Vec<Value> = rows
        .iter()
        .map(|(_, a, p)| {
            project(
                json!({
                    "address": a,
                    "totalWeight": p.votes.saturating_add(p.nft_bonus).to_string(),
                    "votes": p.votes.to_string(),
                    "nftBonus": p.nft_bonus.to_string(),
                    "balance": p.balance.to_string(),
                    "delegators": delegators.get(*a).copied().unwrap_or(0),
                    "selfDelegated": p.delegate == Some(**a),
                    "delegate": p.delegate,
                }),
                &f,
            )
        })
        .collect();
    Ok(json(&json!({ "items": items, "nextCursor": next })))
}

/// `GET /v1/events/governance`: the feed of governance events for the achievement system, in
/// order; each event appears once it is final, and a retraction follows an event a deeper reorg
/// removed. `after` is the last `seq` seen.
pub fn governance_events(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&["after", "limit"])?;
    let after = u64_param(req, "after")?.unwrap_or(0);
    let limit = limit(state, req)?;
    let items = state.store.feed(after, limit)?;
    let last = items.last().map_or(after, |i| i.seq);
    Ok(json(&json!({ "items": items, "nextAfter": last })))
}

/// `GET /v1/users/{address}/governance-achievements`: first proposal, first vote, executed
/// proposals and participation streaks, each with the event that earned it.
pub fn governance_achievements(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    let a = address(req)?;
    let events = state.store.account_events(&a)?;
    let mut out = Vec::new();
    let entry = |name: &str, e: &crate::domain::achievement::GovernanceEvent, fin: bool| json!({ "achievement": name, "final": fin, "earnedBy": e });
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
    Ok(json(&json!({ "user": a, "proposalsCreated": proposals, "votesCast": votes, "achievements": out })))
}

/// `GET /v1/users/{address}/governance-benefits`
pub fn governance_benefits(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&["block", "fields"])?;
    let a = address(req)?;
    let indexed = state.status.indexed.load(Ordering::Relaxed);
    let block = u64_param(req, "block")?;
    let f = fields(req, &["user", "nftBonus", "feeDiscountBps", "priorityBoost", "benefitExecutor", "blockNumber", "provisional"])?;
    let cp = match block {
        Some(b) if b > indexed => return Err(Problem::bad_param("block", format!("block {b} is not indexed yet (indexed up to {indexed})"))),
        Some(b) => state.store.account_at_block(&a, b)?,
        None => state.store.account(&a)?,
    }
    .unwrap_or_default();
    let at = block.unwrap_or(indexed);
    let v = json!({
        "user": a,
        "nftBonus": cp.nft_bonus.to_string(),
        "feeDiscountBps": cp.fee_discount_bps.to_string(),
        "priorityBoost": cp.priority_boost.to_string(),
        "benefitExecutor": state.store.info()?.and_then(|i| i.benefit_executor),
        "blockNumber": at,
        "provisional": at > state.status.finalized(),
    });
    Ok(json(&project(v, &f)))
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
        ProposalStatus::Executed => "executed",
        ProposalStatus::Canceled => "canceled",
        ProposalStatus::Expired => "expired",
        ProposalStatus::Defeated => "defeated",
        ProposalStatus::Pending | ProposalStatus::Active => "voting",
        ProposalStatus::Succeeded => "awaitingQueue",
        ProposalStatus::Queued => match (p.eta, now) {
            (Some(eta), Some(now)) if now >= eta => "ready",
            _ => "waiting",
        },
    };
    let timelock = state.store.info()?.and_then(|i| i.timelock);
    Ok(json(&json!({
        "proposalId": id.to_string(),
        "status": p.status,
        "executionState": execution_state,
        "eta": p.eta.map(crate::domain::time::format),
        "expiresAt": match (p.eta, grace) { (Some(e), Some(g)) => Some(crate::domain::time::format(e + g)), _ => None },
        "timelock": timelock,
        "timelockOperationId": p.timelock_operation_id,
        "operation": op,
        "executedAt": p.executed_at.map(crate::domain::time::format),
        "targets": p.targets,
        "calldatas": p.calldatas,
    })))
}

/// `GET /v1/proposals/stats`
pub fn stats(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    let s = state.store.stats()?;
    let get = |k: &str| s.by_status.get(k).copied().unwrap_or(0);
    let passed = get("Succeeded") + get("Queued") + get("Executed") + get("Expired");
    let decided = passed + get("Defeated");
    Ok(json(&json!({
        "proposals": s.proposals,
        "byStatus": s.by_status,
        "activeProposals": get("Active"),
        "votes": s.votes,
        "uniqueVoters": s.unique_voters,
        "accounts": s.accounts,
        "eventsIndexed": s.events,
        "votesByDay": s.votes_by_day,
        "voterTurnout": if s.accounts > 0 { s.unique_voters as f64 / s.accounts as f64 } else { 0.0 },
        "averageVotesPerProposal": if s.proposals > 0 { s.votes as f64 / s.proposals as f64 } else { 0.0 },
        "passRate": if decided > 0 { passed as f64 / decided as f64 } else { 0.0 },
        "executionRate": if passed > 0 { get("Executed") as f64 / passed as f64 } else { 0.0 },
    })))
}

/// `GET /v1/status`
pub fn status(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    let st = &state.status;
    let info = state.store.info()?;
    let head = st.head.load(Ordering::Relaxed);
    let indexed = st.indexed.load(Ordering::Relaxed);
    Ok(json(&json!({
        "chainId": st.chain_id.load(Ordering::Relaxed),
        "governor": info.as_ref().map(|i| i.governor),
        "governorName": info.as_ref().map(|i| i.name.clone()),
        "voteSource": info.as_ref().map(|i| i.vote_source),
        "token": info.as_ref().map(|i| i.token),
        "benefitExecutor": info.as_ref().and_then(|i| i.benefit_executor),
        "achievementNft": info.as_ref().and_then(|i| i.achievement_nft),
        "timelock": info.as_ref().and_then(|i| i.timelock),
        "clockMode": info.as_ref().map(|i| i.clock_mode),
        "countingMode": info.as_ref().map(|i| i.counting_mode.clone()),
        "votingDelay": info.as_ref().map(|i| i.voting_delay),
        "votingPeriod": info.as_ref().map(|i| i.voting_period),
        "proposalThreshold": info.as_ref().map(|i| i.proposal_threshold.to_string()),
        "startBlock": st.start_block.load(Ordering::Relaxed),
        "headBlock": head,
        "indexedBlock": indexed,
        "finalizedBlock": st.finalized(),
        "confirmations": st.confirmations.load(Ordering::Relaxed),
        "lagBlocks": head.saturating_sub(indexed),
        "caughtUp": st.caught_up.load(Ordering::Relaxed),
        "rpcReachable": st.rpc_ok.load(Ordering::Relaxed),
        "reorgsHandled": st.reorgs.load(Ordering::Relaxed),
    })))
}

/// `GET /healthz`: the process answers.
pub fn healthz(_state: &ApiState, _req: &Req<'_>) -> Resp {
    Ok(json(&json!({ "status": "ok" })))
}

/// `GET /readyz`: caught up with the head and the node reachable.
pub fn readyz(state: &ApiState, _req: &Req<'_>) -> Resp {
    let caught_up = state.status.caught_up.load(Ordering::Relaxed);
    let rpc = state.status.rpc_ok.load(Ordering::Relaxed);
    let bus = state.bus.healthy();
    if caught_up && rpc && bus {
        Ok(json(&json!({ "status": "ready" })))
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

// ---------------------------------------------------------------------------------------------
// `POST /v1/events/governance`: governance-related events other systems send in (the guide's
// §4.3), validated and published on `govflow.<chainId>.inbound.<kind>` for the achievement
// trigger system.

/// Version of the inbound event payload published on the bus.
pub const INBOUND_SCHEMA_VERSION: u32 = 1;
/// Members of an inbound event (the request body).
pub const INBOUND_MEMBERS: &[&str] = &["id", "kind", "account", "proposalId", "source", "occurredAt", "data"];
/// Largest `data` of an inbound event, serialised.
pub const INBOUND_DATA_MAX_BYTES: usize = 16 * 1024;
/// Longest inbound `kind`.
pub const INBOUND_KIND_MAX_CHARS: usize = 64;
/// Longest inbound `id`.
pub const INBOUND_ID_MAX_CHARS: usize = 128;
/// Longest inbound `source`.
pub const INBOUND_SOURCE_MAX_CHARS: usize = 64;
/// Namespace of the ids derived from a body without `id` (UUID v5 of its canonical JSON).
const INBOUND_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x3c8e_91d4_5a27_4f0b_9e6d_2b71_c4a8_f013);
/// First time not accepted as `occurredAt` (10000-01-01T00:00:00Z).
const YEAR_10000: i64 = 253_402_300_800;

/// What `POST /v1/events/governance` answers: 202, the event is on the bus.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboundAccepted {
    /// The event's id, its `Nats-Msg-Id` on the bus: the `id` sent, or a UUID v5 of the event's
    /// canonical JSON when none was sent (an identical retry gets the same id).
    #[schema(pattern = "^[A-Za-z0-9:._-]{1,128}$", example = "forum-4711")]
    pub id: String,
    /// The bus subject it was published on: `govflow.<chainId>.inbound.<kind, dots as underscores>`.
    #[schema(pattern = "^govflow\\.[0-9]+\\.inbound\\.[a-z][a-z0-9_]*$", example = "govflow.31337.inbound.forum_post_created")]
    pub subject: String,
    /// The bus had this id already (within its deduplication window): nothing was published
    /// again; the event sent first stands.
    pub duplicate: bool,
    /// Position of the event in the inbound stream (in-process bus: a counter).
    pub sequence: u64,
    /// When govflow received this request (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T12:00:00.123Z")]
    pub received_at: String,
}

/// An inbound event as published on the bus (`schemaVersion` 1).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundEvent {
    /// [`INBOUND_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Identity (`Nats-Msg-Id`).
    pub id: String,
    /// Kind, e.g. `forum.post_created`.
    pub kind: String,
    /// Chain id govflow indexes.
    pub chain_id: u64,
    /// The account the event is about (lower-case hex).
    pub account: Address,
    /// The proposal it is about (decimal), if any.
    pub proposal_id: Option<String>,
    /// The sending system.
    pub source: String,
    /// When it happened (RFC 3339, UTC), if the sender said.
    pub occurred_at: Option<String>,
    /// When govflow received it (RFC 3339, UTC).
    pub received_at: String,
    /// Kind-specific data.
    pub data: Value,
}

/// The members of a valid request body, normalised.
#[derive(Debug)]
struct Inbound {
    id: Option<String>,
    kind: String,
    account: Address,
    proposal_id: Option<String>,
    source: String,
    occurred_at: Option<String>,
    data: Value,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A client's string as quoted in a message (long ones cut).
fn shown(s: &str) -> String {
    if s.chars().count() <= 80 {
        format!("{s:?}")
    } else {
        format!("{:?}…", s.chars().take(80).collect::<String>())
    }
}

fn valid_kind(s: &str) -> bool {
    let mut parts = 0;
    for part in s.split('.') {
        let mut b = part.bytes();
        if !b.next().is_some_and(|c| c.is_ascii_lowercase()) || !b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') {
            return false;
        }
        parts += 1;
    }
    parts >= 2
}

fn valid_id(s: &str) -> bool {
    (1..=INBOUND_ID_MAX_CHARS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'))
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 date-time (`T` or `t`, a fraction of any length, `Z`, `z` or a `±hh:mm`
/// offset) into unix seconds and nanoseconds; `Err` says what is wrong. Leap seconds and times
/// before 1970 or after 9999 are refused.
pub(crate) fn parse_rfc3339(s: &str) -> Result<(u64, u32), String> {
    const SHAPE: &str = "not an RFC 3339 date-time (YYYY-MM-DDThh:mm:ss[.fraction] then Z or ±hh:mm)";
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Result<u32, String> {
        let digits = b.get(from..to).ok_or(SHAPE)?;
        if digits.iter().all(u8::is_ascii_digit) {
            Ok(digits.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')))
        } else {
            Err(SHAPE.to_string())
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return Err(SHAPE.into());
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(SHAPE.into());
        }
        let digits = &s[start..i];
        let kept = &digits[..digits.len().min(9)];
        nanos = kept.parse::<u32>().map_err(|_| SHAPE.to_string())? * 10u32.pow(9 - kept.len() as u32);
    }
    let offset: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if oh > 23 || om > 59 {
                return Err(format!("the offset {} is out of range", &s[i..]));
            }
            let o = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err(SHAPE.into()),
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) {
        return Err(format!("there is no month {month}"));
    }
    if day == 0 || day > month_days[month as usize - 1] {
        return Err(format!("{year:04}-{month:02} has no day {day}"));
    }
    if hour > 23 || minute > 59 {
        return Err(format!("there is no time {hour:02}:{minute:02}"));
    }
    if second > 59 {
        return Err("leap seconds (:60) are not accepted".into());
    }
    let secs = days_from_civil(i64::from(year), month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset;
    if secs < 0 {
        return Err("times before 1970-01-01T00:00:00Z are not accepted".into());
    }
    if secs >= YEAR_10000 {
        return Err("times after 9999-12-31T23:59:59Z are not accepted".into());
    }
    Ok((secs as u64, nanos))
}

/// RFC 3339 in UTC: whole seconds, or the fraction without trailing zeros.
pub(crate) fn format_rfc3339(secs: u64, nanos: u32) -> String {
    let mut s = crate::domain::time::format(secs);
    if nanos > 0 {
        s.pop();
        s.push('.');
        s.push_str(format!("{nanos:09}").trim_end_matches('0'));
        s.push('Z');
    }
    s
}

/// The same JSON with every object's members sorted (whatever map serde_json was built with).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), canonical(&o[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Validates the members of an inbound event: the event, or every invalid member and why.
fn validate_inbound(o: &Map<String, Value>) -> Result<Inbound, Vec<(&'static str, String)>> {
    let mut errors: Vec<(&'static str, String)> = Vec::new();
    let present = |k: &str| o.get(k).filter(|v| !v.is_null());

    let id = match present("id") {
        None => None,
        Some(Value::String(s)) if valid_id(s) => Some(s.clone()),
        Some(Value::String(s)) => {
            errors.push(("id", format!("id must be 1 to {INBOUND_ID_MAX_CHARS} characters of A-Z a-z 0-9 : . _ -; {} is not", shown(s))));
            None
        }
        Some(v) => {
            errors.push(("id", format!("id must be a string, not {}", type_name(v))));
            None
        }
    };
    let kind = match present("kind") {
        None => {
            errors.push(("kind", "kind is required (e.g. \"forum.post_created\")".into()));
            String::new()
        }
        Some(Value::String(s)) if s.chars().count() > INBOUND_KIND_MAX_CHARS => {
            errors.push(("kind", format!("kind is {} characters long; at most {INBOUND_KIND_MAX_CHARS}", s.chars().count())));
            String::new()
        }
        Some(Value::String(s)) if valid_kind(s) => s.clone(),
        Some(Value::String(s)) => {
            errors.push((
                "kind",
                format!(
                    "kind must be two or more dot-separated lower-case names (^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$, e.g. \"forum.post_created\"); {} is not",
                    shown(s)
                ),
            ));
            String::new()
        }
        Some(v) => {
            errors.push(("kind", format!("kind must be a string, not {}", type_name(v))));
            String::new()
        }
    };
    let account = match present("account") {
        None => {
            errors.push(("account", "account is required (a 0x-prefixed 20-byte hex address)".into()));
            Address::ZERO
        }
        Some(Value::String(s)) => Address::parse(s).unwrap_or_else(|_| {
            errors.push(("account", format!("account must be 0x and 40 hex digits (a 20-byte address, any case); {} is not", shown(s))));
            Address::ZERO
        }),
        Some(v) => {
            errors.push(("account", format!("account must be a string (0x and 40 hex digits), not {}", type_name(v))));
            Address::ZERO
        }
    };
    let proposal_id = match present("proposalId") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 78 && s.bytes().all(|b| b.is_ascii_digit()) => match U256::from_dec_str(s) {
            Ok(n) => Some(n.to_string()),
            Err(_) => {
                errors.push(("proposalId", format!("proposalId {} is above 2^256 - 1", shown(s))));
                None
            }
        },
        Some(Value::String(s)) => {
            errors.push(("proposalId", format!("proposalId must be a decimal string of 1 to 78 digits (a uint256); {} is not", shown(s))));
            None
        }
        Some(Value::Number(_)) => {
            errors.push(("proposalId", "proposalId must be a decimal string, not a number (JSON numbers cannot hold every uint256)".into()));
            None
        }
        Some(v) => {
            errors.push(("proposalId", format!("proposalId must be a decimal string, not {}", type_name(v))));
            None
        }
    };
    let source = match present("source") {
        None => {
            errors.push(("source", "source is required (the name of the sending system)".into()));
            String::new()
        }
        Some(Value::String(s)) if (1..=INBOUND_SOURCE_MAX_CHARS).contains(&s.chars().count()) => s.clone(),
        Some(Value::String(s)) => {
            errors.push(("source", format!("source must be 1 to {INBOUND_SOURCE_MAX_CHARS} characters; it has {}", s.chars().count())));
            String::new()
        }
        Some(v) => {
            errors.push(("source", format!("source must be a string, not {}", type_name(v))));
            String::new()
        }
    };
    let occurred_at = match present("occurredAt") {
        None => None,
        Some(Value::String(s)) => match parse_rfc3339(s) {
            Ok((secs, nanos)) => Some(format_rfc3339(secs, nanos)),
            Err(why) => {
                errors.push(("occurredAt", format!("occurredAt {}: {why}", shown(s))));
                None
            }
        },
        Some(v) => {
            errors.push(("occurredAt", format!("occurredAt must be an RFC 3339 date-time string, not {}", type_name(v))));
            None
        }
    };
    let data = match present("data") {
        None => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => {
            let size = serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
            if size > INBOUND_DATA_MAX_BYTES {
                errors.push(("data", format!("data is {size} bytes serialised; at most {INBOUND_DATA_MAX_BYTES}")));
            }
            canonical(v)
        }
        Some(v) => {
            errors.push(("data", format!("data must be a JSON object, not {}", type_name(v))));
            Value::Null
        }
    };
    if errors.is_empty() {
        Ok(Inbound { id, kind, account, proposal_id, source, occurred_at, data })
    } else {
        Err(errors)
    }
}

impl Inbound {
    /// The id: the one sent, or a UUID v5 of the canonical JSON of the normalised event.
    fn id(&self) -> String {
        if let Some(id) = &self.id {
            return id.clone();
        }
        let body = canonical(&json!({
            "account": self.account,
            "data": self.data,
            "kind": self.kind,
            "occurredAt": self.occurred_at,
            "proposalId": self.proposal_id,
            "source": self.source,
        }));
        uuid::Uuid::new_v5(&INBOUND_ID_NAMESPACE, &serde_json::to_vec(&body).unwrap_or_default()).to_string()
    }
}

fn body_problem(status: u16, kind: &str, title: &'static str, detail: impl Into<String>, parameter: Option<&str>) -> Problem {
    let mut p = super::conventions::problem(kind, title, status, detail);
    p.parameter = parameter.map(str::to_string);
    p
}

/// The 422 answer: every invalid member, as `invalidParams` (`name`, `reason`).
fn invalid_event(req: &Req<'_>, errors: &[(&'static str, String)]) -> warp::reply::Response {
    let names: Vec<&str> = errors.iter().map(|(n, _)| *n).collect();
    let p = super::conventions::problem(
        "invalid-event",
        "Invalid event",
        422,
        format!("the event is invalid: {}", errors.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>().join("; ")),
    )
    .at(req.path);
    let mut v = serde_json::to_value(&p).unwrap_or(Value::Null);
    v["invalidParams"] = Value::Array(errors.iter().map(|(name, reason)| json!({ "name": name, "reason": reason })).collect());
    tracing::debug!(target: "http", invalid = ?names, "inbound event refused");
    let mut r = super::json_status(&v, StatusCode::UNPROCESSABLE_ENTITY);
    r.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("application/problem+json"));
    r
}

/// The request body as a JSON object, or the 400/408/413/415 problem.
fn inbound_body(state: &ApiState, req: &Req<'_>) -> Result<Map<String, Value>, Problem> {
    let ct = req.headers.get(warp::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut parts = ct.split(';').map(str::trim);
    let essence = parts.next().unwrap_or("");
    let charset_ok = parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8"),
        _ => true,
    });
    if !essence.eq_ignore_ascii_case("application/json") || !charset_ok {
        let detail = if ct.is_empty() {
            "no Content-Type: send the event as application/json".to_string()
        } else {
            format!("Content-Type {} is not accepted: send the event as application/json (UTF-8)", shown(ct))
        };
        return Err(body_problem(415, "unsupported-media-type", "Unsupported media type", detail, None));
    }
    let bytes = match req.body {
        Body::Bytes(b) => b,
        Body::Empty => return Err(body_problem(400, "invalid-body", "Invalid body", "the request has no body: send the event as a JSON object", Some("body"))),
        Body::TooLarge => {
            return Err(body_problem(
                413,
                "content-too-large",
                "Content too large",
                format!("the body is longer than {} bytes", super::MAX_BODY_BYTES),
                Some("body"),
            ))
        }
        Body::TimedOut => {
            return Err(body_problem(
                408,
                "body-timeout",
                "Request timeout",
                format!("the body was not received within {} ms (http.request_timeout_ms)", state.http.request_timeout_ms),
                Some("body"),
            ))
        }
        Body::Failed(e) => return Err(body_problem(400, "invalid-body", "Invalid body", format!("the body could not be read: {e}"), Some("body"))),
    };
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| body_problem(400, "invalid-body", "Invalid body", format!("the body is not valid JSON: {e}"), Some("body")))?;
    let Value::Object(o) = v else {
        return Err(body_problem(
            400,
            "invalid-body",
            "Invalid body",
            format!("the body must be a JSON object (the event), not {}", type_name(&v)),
            Some("body"),
        ));
    };
    let unknown: Vec<&str> = o.keys().map(String::as_str).filter(|k| !INBOUND_MEMBERS.contains(k)).collect();
    if let Some(first) = unknown.first() {
        let list = unknown.iter().map(|k| shown(k)).collect::<Vec<_>>().join(", ");
        return Err(body_problem(
            400,
            "invalid-body",
            "Invalid body",
            format!("unknown member(s) {list}; an event has only: {}", INBOUND_MEMBERS.join(", ")),
            Some(first),
        ));
    }
    Ok(o)
}

/// `POST /v1/events/governance` (bearer `http.events_token`; 404 without one configured):
/// validates an event another system sends and publishes it on
/// `govflow.<chainId>.inbound.<kind>` with `Nats-Msg-Id` = its id, so a retried POST is
/// deduplicated by the bus. 202 once the bus has it; 503 (`Retry-After`) when the bus is
/// unreachable, 502 when it refuses: the client is told to retry, nothing is dropped silently.
pub fn publish_governance_event(state: &ApiState, req: &Req<'_>) -> Resp {
    let (outcome, resp) = match inbound(state, req) {
        Ok((resp, duplicate)) => (if duplicate { "duplicate" } else { "accepted" }, Ok(resp)),
        Err(failed) => *failed,
    };
    metrics::counter!(crate::metrics::BUS_INBOUND_EVENTS_TOTAL, "outcome" => outcome).increment(1);
    resp
}

/// The answer and whether it was a duplicate, or the outcome label and the answer of a failure.
type InboundResult = Result<(warp::reply::Response, bool), Box<(&'static str, Resp)>>;

fn inbound(state: &ApiState, req: &Req<'_>) -> InboundResult {
    let route = super::cache::BearerRoute {
        token: state.http.events_token.as_deref(),
        key: "http.events_token",
        what: "POST /v1/events/governance",
        challenge: "Bearer realm=\"govflow-events\"",
    };
    super::cache::check_bearer(&route, req).map_err(|r| Box::new(("unauthorized", Ok(*r))))?;
    let invalid = |p: Problem| Box::new(("invalid", Err(p)));
    req.only(&[]).map_err(invalid)?;
    let body = inbound_body(state, req).map_err(invalid)?;
    let event = validate_inbound(&body).map_err(|errors| Box::new(("invalid", Ok(invalid_event(req, &errors)))))?;
    let chain_id = state.status.chain_id.load(Ordering::Relaxed);
    let id = event.id();
    let subject = crate::bus::Subjects::new(chain_id).inbound(&event.kind);
    let received_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let payload = InboundEvent {
        schema_version: INBOUND_SCHEMA_VERSION,
        id: id.clone(),
        kind: event.kind,
        chain_id,
        account: event.account,
        proposal_id: event.proposal_id,
        source: event.source,
        occurred_at: event.occurred_at,
        received_at: received_at.clone(),
        data: event.data,
    };
    let envelope = crate::bus::Envelope::json(subject.clone(), id.clone(), &payload);
    let bus = state.bus.clone();
    // Handlers run on the blocking pool ([`super::answer`]): waiting for the bus here is legal.
    let published = match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(async move { bus.publish(envelope).await }),
        Err(_) => Err(crate::bus::BusError::Unavailable("no async runtime".into())),
    };
    match published {
        Ok(ack) => {
            tracing::info!(target: "http", id = %id, subject = %subject, duplicate = ack.duplicate, sequence = ack.sequence, "inbound governance event");
            let accepted = InboundAccepted { id, subject, duplicate: ack.duplicate, sequence: ack.sequence, received_at };
            let mut r = super::json_status(&accepted, StatusCode::ACCEPTED);
            r.headers_mut().insert(warp::http::header::CACHE_CONTROL, warp::http::HeaderValue::from_static("no-store"));
            Ok((r, ack.duplicate))
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(target: "bus", id = %id, subject = %subject, error = %e, "inbound governance event not published: bus unavailable");
            let mut r = Problem::unavailable(format!(
                "the bus is unavailable, the event may not have been published: retry the same request (its id {id} is deduplicated)"
            ))
            .at(req.path)
            .response();
            r.headers_mut().insert(warp::http::header::RETRY_AFTER, warp::http::HeaderValue::from_static("1"));
            Err(Box::new(("unavailable", Ok(r))))
        }
        Err(e) => {
            tracing::error!(target: "bus", id = %id, subject = %subject, error = %e, "inbound governance event refused by the bus");
            let p = super::conventions::problem(
                "bus-error",
                "Bad gateway",
                502,
                format!("the bus refused the event (the error is logged); it was not published: retry later with the same id {id}"),
            );
            Err(Box::new(("unavailable", Err(p))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_are_parsed_strictly() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok((0, 0)));
        assert_eq!(parse_rfc3339("2026-01-31T12:00:00Z"), Ok((1_769_860_800, 0)));
        assert_eq!(parse_rfc3339("2026-01-31t13:30:00.5+01:30"), Ok((1_769_860_800, 500_000_000)));
        assert_eq!(parse_rfc3339("2026-01-31T10:00:00-02:00"), Ok((1_769_860_800, 0)));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00.1234567891z").map(|t| t.1), Ok(123_456_789));
        for bad in [
            "2026-01-31 12:00:00Z",
            "2026-01-31T12:00:00",
            "2026-01-31T12:00:00+0100",
            "2026-01-31T12:00:00.Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-31T24:00:00Z",
            "2026-01-31T23:59:60Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-00:01",
            "2026-01-31T12:00:00Zjunk",
            "２026-01-31T12:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert_eq!(format_rfc3339(1_769_860_800, 0), "2026-01-31T12:00:00Z");
        assert_eq!(format_rfc3339(1_769_860_800, 500_000_000), "2026-01-31T12:00:00.5Z");
    }

    #[test]
    fn kinds_and_ids() {
        for ok in ["forum.post_created", "proposal.discussed", "a.b.c", "a1_.b2"] {
            assert!(valid_kind(ok), "{ok}");
        }
        for bad in ["forum", "Forum.post", "forum.", ".post", "forum..post", "forum.1post", "forum.post-created", "_a.b", "a.b*", ""] {
            assert!(!valid_kind(bad), "{bad}");
        }
        assert!(valid_id("forum:4711_a.b-c"));
        assert!(!valid_id(""));
        assert!(!valid_id("has space"));
        assert!(!valid_id(&"a".repeat(129)));
    }

    #[test]
    fn derived_ids_follow_the_normalised_event() {
        let parse = |s: &str| match serde_json::from_str::<Value>(s).unwrap() {
            Value::Object(o) => validate_inbound(&o).map_err(|e| e.into_iter().map(|(n, _)| n).collect::<Vec<_>>()),
            _ => unreachable!(),
        };
        let a = parse(
            r#"{"kind":"forum.post_created","account":"0xABCDEFabcdefABCDEFabcdefABCDEFabcdefABCD","source":"forum","data":{"b":1,"a":[{"y":1,"x":2}]}}"#,
        )
        .unwrap();
        let b = parse(r#"{"data":{"a":[{"x":2,"y":1}],"b":1},"source":"forum","account":"0xabcdefabcdefabcdefabcdefabcdefabcdefabcd","kind":"forum.post_created","proposalId":null,"occurredAt":null}"#).unwrap();
        assert_eq!(a.id(), b.id());
        assert!(uuid::Uuid::parse_str(&a.id()).is_ok());
        let c = parse(
            r#"{"kind":"forum.post_created","account":"0xabcdefabcdefabcdefabcdefabcdefabcdefabcd","source":"forum","data":{"b":2,"a":[{"y":1,"x":2}]}}"#,
        )
        .unwrap();
        assert_ne!(a.id(), c.id());
        let given = parse(r#"{"id":"x-1","kind":"a.b","account":"0xabcdefabcdefabcdefabcdefabcdefabcdefabcd","source":"s"}"#).unwrap();
        assert_eq!(given.id(), "x-1");
        assert_eq!(given.data, json!({}));
        let bad = parse(r#"{"id":"","kind":"A","account":"0x12","proposalId":"0x1","source":"","occurredAt":"now","data":[]}"#).unwrap_err();
        assert_eq!(bad, ["id", "kind", "account", "proposalId", "source", "occurredAt", "data"]);
        assert_eq!(parse("{}").unwrap_err(), ["kind", "account", "source"]);
    }
}
