//! The route table: every route declared once, with its method, path template, handler, read
//! cache use, `Cache-Control`, auth requirement, `fields=` projection and its documentation.
//! Routing ([`super::find`], [`super::allowed_methods`]), the metrics label (the template), the
//! read cache's route set, `Cache-Control` and the OpenAPI paths ([`super::openapi`]) are all
//! derived from [`ROUTES`].

use super::auth::Auth;
use super::openapi::{self, Doc, Ok, P};
use super::problem::Problem;
use super::{api, cache, ingest, params, views, ApiState, Req};

/// A route's handler: the answer, or the problem to answer.
pub type Handler = fn(&ApiState, &Req<'_>) -> Result<warp::reply::Response, Problem>;

/// `Cache-Control` of a route's successful answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheControl {
    /// `no-store`: answers that must not be reused (status, probes, admin, writes).
    NoStore,
    /// `public, max-age=5`: reads, which move with the chain.
    Public,
}

impl CacheControl {
    /// The header value.
    pub fn header(self) -> &'static str {
        match self {
            CacheControl::NoStore => "no-store",
            CacheControl::Public => "public, max-age=5",
        }
    }
}

/// Which `fields=` a route takes.
#[derive(Clone, Copy)]
pub enum Projection {
    /// None: `fields` is an unknown parameter.
    None,
    /// The members of the answer's view type (of each `items[]` element for a list), as its
    /// schema names them ([`openapi::members`]): checked by the router ([`super::route`]),
    /// kept by [`super::view`], enumerated in the document.
    Fields(fn() -> Vec<String>),
}

/// One route.
pub struct Route {
    /// `GET` or `POST` (`HEAD` and `OPTIONS` follow).
    pub method: &'static str,
    /// Path template; `{name}` is a path parameter. Also the metrics label.
    pub path: &'static str,
    /// The handler.
    pub handler: Handler,
    /// Whole `200` answers are kept in the read cache ([`super::cache`]).
    pub cached: bool,
    /// `Cache-Control` of successful answers.
    pub cache_control: CacheControl,
    /// What the caller must show.
    pub auth: Auth,
    /// `fields=`.
    pub projection: Projection,
    /// The documented operation.
    pub doc: Doc,
}

/// `/v1/ws` without a websocket handshake (the upgrade itself is served by [`super::ws::route`]).
fn upgrade_required(_state: &ApiState, _req: &Req<'_>) -> Result<warp::reply::Response, Problem> {
    Ok(super::ws::upgrade_required())
}

/// Every route. Literal templates win over parameterised ones ([`super::find`]); a template with
/// several methods lists them in `Allow` in this order.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/v1/proposals",
        handler: api::list_proposals,
        cached: true,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        // The detail's members: `/v1` has always accepted `history` and `voteCounts` here (list
        // items simply have none), and accepted names are never withdrawn within a version.
        projection: Projection::Fields(openapi::members::<views::ProposalDetailView>),
        doc: Doc {
            id: "listProposals",
            tag: "proposals",
            summary: "List proposals",
            description: "Proposals filtered by status, proposer, creation time and deadline, sorted and keyset-paginated (stable under concurrent writes).",
            params: &[],
            query: params::declared::<params::ListProposalsQuery>,
            ok: Ok::Json("ProposalPage", "A page of proposals."),
            not_found: None,
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/proposals/stats",
        handler: api::stats,
        cached: true,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::Stats>),
        doc: Doc {
            id: "proposalStats",
            tag: "proposals",
            summary: "Governance statistics",
            description: "Proposals per status, votes, unique voters, votes per day (the last 30 days with votes), turnout, pass and execution rates.",
            params: &[],
            query: params::none,
            ok: Ok::Json("Stats", "The figures."),
            not_found: None,
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/proposals/{proposalId}",
        handler: api::proposal,
        cached: true,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::ProposalDetailView>),
        doc: Doc {
            id: "getProposal",
            tag: "proposals",
            summary: "One proposal",
            description: "The proposal (tallies, `quorum(snapshot)`, eta, calls, `title` from the description's first line, `metadataURI`) with its status `history` (status, block, time, transaction; none for clock-driven changes) and `voteCounts`.",
            params: &[P::ProposalId],
            query: params::none,
            ok: Ok::Json("Proposal", "The proposal."),
            not_found: Some("No such proposal."),
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/proposals/{proposalId}/votes",
        handler: api::proposal_votes,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::VoteView>),
        doc: Doc {
            id: "listProposalVotes",
            tag: "proposals",
            summary: "Votes on a proposal",
            description: "The proposal's vote records, by block (default) or weight; each carries the voter's weight breakdown at the snapshot.",
            params: &[P::ProposalId],
            query: params::declared::<params::ProposalVotesQuery>,
            ok: Ok::Json("VotePage", "A page of votes."),
            not_found: Some("No such proposal."),
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/proposals/{proposalId}/execution-status",
        handler: api::execution_status,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::ExecutionStatus>),
        doc: Doc {
            id: "getExecutionStatus",
            tag: "proposals",
            summary: "Execution status of a proposal",
            description: "The timelock operation (scheduled, executed, cancelled), the eta and the execution state.",
            params: &[P::ProposalId],
            query: params::none,
            ok: Ok::Json("ExecutionStatus", "The execution status."),
            not_found: Some("No such proposal."),
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/users/{address}/votes",
        handler: api::user_votes,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::VoteView>),
        doc: Doc {
            id: "listUserVotes",
            tag: "users",
            summary: "Votes of an account",
            description: "The account's vote records, newest first (by block), each with its weight breakdown at the proposal's snapshot.",
            params: &[P::Account],
            query: params::declared::<params::UserVotesQuery>,
            ok: Ok::Json("VotePage", "A page of votes."),
            not_found: None,
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/users/{address}/voting-power",
        handler: api::voting_power,
        cached: true,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::VotingPowerView>),
        doc: Doc {
            id: "getVotingPower",
            tag: "users",
            summary: "Voting power of an account",
            description: "Own balance (`baseWeight`, when self-delegated), weight delegated by others, NFT bonus and the total the governor counts: now (the indexed block), after `block`, or at a proposal's snapshot (`proposalId`). `block` and `proposalId` exclude each other. Unknown accounts have zero power.",
            params: &[P::Account],
            query: params::declared::<params::VotingPowerQuery>,
            ok: Ok::Json("VotingPower", "The voting power."),
            not_found: Some("No such proposal (`proposalId`)."),
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/users/{address}/governance-benefits",
        handler: api::governance_benefits,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::GovernanceBenefits>),
        doc: Doc {
            id: "getGovernanceBenefits",
            tag: "users",
            summary: "Governance benefits of an account",
            description: "NFT weight bonus and special benefits (fee discount, priority boost), now or as of `block`.",
            params: &[P::Account],
            query: params::declared::<params::BenefitsQuery>,
            ok: Ok::Json("GovernanceBenefits", "The benefits."),
            not_found: None,
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/users/{address}/governance-achievements",
        handler: api::governance_achievements,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::GovernanceAchievements>),
        doc: Doc {
            id: "getGovernanceAchievements",
            tag: "users",
            summary: "Governance achievements of an account",
            description: "First proposal, first vote, executed proposals and participation streaks (3, 5, 10, 20, 50, 100 consecutive proposals), each with the event that earned it and whether it is final.",
            params: &[P::Account],
            query: params::none,
            ok: Ok::Json("GovernanceAchievements", "The achievements."),
            not_found: None,
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/events/governance",
        handler: api::governance_events,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::Fields(openapi::feed_item_members),
        doc: Doc {
            id: "listGovernanceEvents",
            tag: "events",
            summary: "Governance event feed",
            description: "The feed of governance events for the achievement system (schema `GovernanceEvent`, version 1), in order: each event once it is final, exactly once; a `retraction` follows an event a deeper reorg removed. Poll with `after` = the last `nextAfter`.",
            params: &[],
            query: params::declared::<params::GovernanceEventsQuery>,
            ok: Ok::Json("GovernanceEventPage", "Feed items."),
            not_found: None,
            strict: true,
        },
    },
    Route {
        method: "POST",
        path: "/v1/events/governance",
        handler: ingest::publish_governance_event,
        cached: false,
        cache_control: CacheControl::NoStore,
        auth: Auth::Events,
        projection: Projection::None,
        doc: Doc {
            id: "sendGovernanceEvent",
            tag: "events",
            summary: "Send a governance event",
            description: "Another system sends a governance-related event (a forum post, a discussion, ...) to the achievement trigger system: govflow validates it and publishes it on the bus subject `govflow.<chainId>.inbound.<kind with . as _>` (stream `GOVFLOW_INBOUND_<chainId>`) as `{schemaVersion: 1, id, kind, chainId, account, proposalId, source, occurredAt, receivedAt, data}`, with `Nats-Msg-Id` = `id`. 202 once the bus has it. Retrying is safe: the same `id` (given, or derived from an identical body) is not published twice; the answer then says `duplicate: true`. On 503 (bus unavailable) or 502 retry with the same request: nothing is dropped silently. Needs the bearer token `http.events_token`; without a configured token the route is disabled and answers 404. The body is `application/json` (UTF-8), at most 64 KiB; unknown members are a 400, invalid members a 422 listing each (`invalidParams`).",
            params: &[],
            query: params::none,
            ok: Ok::Inbound,
            not_found: Some("The route is disabled (no `http.events_token` is configured)."),
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/delegates",
        handler: api::delegates,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::Delegate>),
        doc: Doc {
            id: "listDelegates",
            tag: "delegates",
            summary: "Delegates",
            description: "Accounts ranked by the weight the governor counts now (token votes plus NFT bonus), with the number of other accounts delegating to them.",
            params: &[],
            query: params::declared::<params::DelegatesQuery>,
            ok: Ok::Json("DelegatePage", "A page of delegates."),
            not_found: None,
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/status",
        handler: api::status,
        cached: false,
        cache_control: CacheControl::NoStore,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::Status>),
        doc: Doc {
            id: "getStatus",
            tag: "operations",
            summary: "Indexer status",
            description: "Chain id, discovered contracts and modes, head, indexed and finalized blocks, lag.",
            params: &[],
            query: params::none,
            ok: Ok::Json("Status", "The status."),
            not_found: None,
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/openapi.json",
        handler: openapi::document,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::None,
        doc: Doc {
            id: "getOpenApiDocument",
            tag: "documentation",
            summary: "This document",
            description: "The OpenAPI 3.1 document of this API, generated from govflow's code.",
            params: &[],
            query: params::none,
            ok: Ok::Document,
            not_found: None,
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/docs",
        handler: openapi::explorer,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::None,
        doc: Doc {
            id: "getExplorer",
            tag: "documentation",
            summary: "API explorer",
            description: "An interactive explorer of this document (Swagger UI, served by govflow itself: its files are built into the binary, nothing is loaded from elsewhere).",
            params: &[],
            query: params::none,
            ok: Ok::Explorer,
            not_found: None,
            strict: true,
        },
    },
    Route {
        method: "GET",
        path: "/v1/docs/{asset}",
        handler: openapi::asset,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::None,
        doc: Doc {
            id: "getExplorerAsset",
            tag: "documentation",
            summary: "API explorer file",
            description: "A file of the explorer (scripts, styles, icons).",
            params: &[P::Asset],
            query: params::none,
            ok: Ok::Asset,
            not_found: Some("No such file."),
            strict: true,
        },
    },
    Route {
        method: "POST",
        path: "/v1/admin/cache/invalidate",
        handler: cache::invalidate,
        cached: false,
        cache_control: CacheControl::NoStore,
        auth: Auth::Admin,
        projection: Projection::None,
        doc: Doc {
            id: "invalidateCache",
            tag: "admin",
            summary: "Invalidate the read cache",
            description: "Invalidates the cached reads of proposals, accounts or a scope, in this instance and (through Redis) every other; for emergencies, since the cache follows the chain by itself. Name at least one of `proposalId`, `account`, `scope`. Needs the admin bearer token (`http.admin_token`); without a configured token the admin routes are disabled and answer 404.",
            params: &[],
            query: params::declared::<params::InvalidateQuery>,
            ok: Ok::Admin,
            not_found: Some("The admin routes are disabled (no `http.admin_token`)."),
            strict: false,
        },
    },
    Route {
        method: "GET",
        path: "/v1/ws",
        handler: upgrade_required,
        cached: false,
        cache_control: CacheControl::Public,
        auth: Auth::None,
        projection: Projection::None,
        doc: Doc {
            id: "openWebsocket",
            tag: "websocket",
            summary: "Live updates (websocket)",
            description: "Upgrades to a websocket (RFC 6455) pushing live updates as commits land. The client sends JSON commands (text frames, each may carry an `id` echoed in the answer): `{\"op\":\"subscribe\",\"topic\":T}` (optionally with `since`: the last `seq` seen, to replay what was missed), `{\"op\":\"unsubscribe\",\"topic\":T}`, `{\"op\":\"ping\"}`. Topics: `proposals`, `proposal:<id>`, `account:<address>`, `status`. Topic messages are `{type, topic, seq, provisional, data}` with `data` in the REST shape of the same object (`proposal.updated`, `proposal.removed`, `vote.cast`, `power.changed`, `status`, `rollback`, `resync`); `subscribed`, `unsubscribed`, `pong`, `heartbeat` and `error` carry no `seq`. A request that is not a websocket upgrade answers 426; past `websocket.max_connections`, 503.",
            params: &[],
            query: params::none,
            ok: Ok::Websocket,
            not_found: None,
            strict: false,
        },
    },
    Route {
        method: "GET",
        path: "/healthz",
        handler: api::healthz,
        cached: false,
        cache_control: CacheControl::NoStore,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::Health>),
        doc: Doc {
            id: "healthz",
            tag: "operations",
            summary: "Liveness",
            description: "The process answers.",
            params: &[],
            query: params::none,
            ok: Ok::Json("Health", "Alive."),
            not_found: None,
            strict: false,
        },
    },
    Route {
        method: "GET",
        path: "/readyz",
        handler: api::readyz,
        cached: false,
        cache_control: CacheControl::NoStore,
        auth: Auth::None,
        projection: Projection::Fields(openapi::members::<views::Ready>),
        doc: Doc {
            id: "readyz",
            tag: "operations",
            summary: "Readiness",
            description: "Ready when caught up with the head and the chain node is reachable; 503 otherwise.",
            params: &[],
            query: params::none,
            ok: Ok::Json("Ready", "Ready."),
            not_found: None,
            strict: false,
        },
    },
    Route {
        method: "GET",
        path: "/metrics",
        handler: api::metrics,
        cached: false,
        cache_control: CacheControl::NoStore,
        auth: Auth::None,
        projection: Projection::None,
        doc: Doc {
            id: "metrics",
            tag: "operations",
            summary: "Prometheus metrics",
            description: "Metrics in the Prometheus text format (`govflow_*`).",
            params: &[],
            query: params::none,
            ok: Ok::Metrics,
            not_found: None,
            strict: false,
        },
    },
];

/// The route of a method and template.
pub fn route_of(method: &str, template: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.method == method && r.path == template)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_is_declared_once_with_a_unique_operation() {
        for (i, r) in ROUTES.iter().enumerate() {
            assert!(ROUTES[i + 1..].iter().all(|o| (o.method, o.path) != (r.method, r.path)), "{} {} twice", r.method, r.path);
            assert!(ROUTES[i + 1..].iter().all(|o| o.doc.id != r.doc.id), "operation id {} twice", r.doc.id);
        }
    }

    #[test]
    fn writes_and_admin_routes_are_not_cached() {
        for r in ROUTES.iter().filter(|r| r.method != "GET" || r.auth != Auth::None) {
            assert!(!r.cached && r.cache_control == CacheControl::NoStore, "{} {}", r.method, r.path);
        }
    }
}
