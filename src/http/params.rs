//! The query parameters of the routes: one `IntoParams` struct per route that takes a query
//! (`fields=` aside: it follows the route's [`super::routes::Projection`]). The route table
//! names the struct; the document lists its parameters ([`super::openapi`]) and the handler
//! accepts exactly them ([`super::Req::accept`]). The handlers read the values as strings and
//! parse them with their own messages, so the structs are declarations, never built.
//!
//! Each field's schema is a wire format of this module (inlined), so that the document keeps
//! the exact schemas it had when the parameters were listed by hand.
#![allow(dead_code)]

use serde_json::json;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::domain::schema::{ADDRESS_IN, UINT256_IN};

/// The parameters `T` declares, in its order.
pub(crate) fn declared<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(ParameterIn::Query))
}

/// A route without query parameters.
pub(crate) fn none() -> Vec<Parameter> {
    Vec::new()
}

/// The names of the parameters `T` declares.
pub(crate) fn names<T: IntoParams>() -> Vec<String> {
    declared::<T>().into_iter().map(|p| p.name).collect()
}

const CURSOR: &str = "^[A-Za-z0-9_-]+$";
const RFC3339_IN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|\\+00:00)$";

fn str_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn u64_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(u64::MAX as usize))
}

fn one_of(values: &[&str]) -> ObjectBuilder {
    str_schema().enum_values(Some(values.iter().copied()))
}

/// A comma-separated list (`style: form, explode: false`) of `items`.
fn comma_list(items: impl Into<RefOr<Schema>>) -> ArrayBuilder {
    ArrayBuilder::new().items(items.into()).min_items(Some(1))
}

/// Wire formats of query values: schema-only types, inlined into the parameters.
macro_rules! formats {
    ($($(#[$doc:meta])* $name:ident => $schema:expr;)*) => {$(
        $(#[$doc])*
        pub(crate) struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }
        impl ToSchema for $name {}
    )*};
}

formats! {
    /// A non-negative 64-bit integer.
    U64 => u64_schema();
    /// A uint256, decimal or 0x hex.
    Uint256In => str_schema().pattern(Some(UINT256_IN));
    /// An address (0x hex, any case).
    AddressIn => str_schema().pattern(Some(ADDRESS_IN));
    /// Unix seconds or an RFC 3339 UTC time.
    Time => AnyOfBuilder::new().item(u64_schema()).item(str_schema().pattern(Some(RFC3339_IN)).examples([json!("2026-01-31T12:00:00Z")]));
    /// Statuses, comma-separated.
    Statuses => comma_list(RefOr::Ref(Ref::from_schema_name("ProposalStatus")));
    /// uint256 values (decimal or 0x hex), comma-separated.
    Uint256List => comma_list(str_schema().pattern(Some(UINT256_IN)));
    /// Addresses, comma-separated.
    AddressList => comma_list(str_schema().pattern(Some(ADDRESS_IN)));
    /// `desc` or `asc`.
    Order => one_of(&["desc", "asc"]).default(Some(json!("desc")));
    /// An opaque cursor.
    Cursor => str_schema().pattern(Some(CURSOR));
    /// A page size; its bounds and default are the running configuration's
    /// (`super::openapi` documents them).
    Limit => ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
    /// Sort keys of proposals.
    ProposalSortKey => one_of(&["createdAt", "startBlock", "endBlock", "forVotes", "totalVotes"]);
    /// Sort keys of votes.
    VoteSortKey => one_of(&["block", "weight"]);
    /// A vote's support.
    Support => one_of(&["0", "1", "2", "against", "for", "abstain"]);
    /// Scopes of the cache, comma-separated.
    Scopes => comma_list(one_of(&["all", "proposals", "stats"]));
}

/// `GET /v1/proposals`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListProposalsQuery {
    /// Only these statuses (comma-separated, case-insensitive).
    #[param(value_type = Option<Statuses>, inline, style = Form, explode = false)]
    status: Option<String>,
    /// Only proposals of this proposer.
    #[param(value_type = Option<AddressIn>, inline)]
    proposer: Option<String>,
    /// Created at or after this time: unix seconds or an RFC 3339 UTC time.
    #[param(value_type = Option<Time>, inline, rename = "createdFrom")]
    created_from: Option<String>,
    /// Created at or before this time: unix seconds or an RFC 3339 UTC time.
    #[param(value_type = Option<Time>, inline, rename = "createdTo")]
    created_to: Option<String>,
    /// Deadline (`endBlock`) at or after this timepoint, in the governor's clock units.
    #[param(value_type = Option<U64>, inline, rename = "endFrom")]
    end_from: Option<String>,
    /// Deadline (`endBlock`) at or before this timepoint, in the governor's clock units.
    #[param(value_type = Option<U64>, inline, rename = "endTo")]
    end_to: Option<String>,
    /// Sort key (default `createdAt`: creation block).
    #[param(value_type = Option<ProposalSortKey>, inline)]
    sort: Option<String>,
    /// Direction (default `desc`).
    #[param(value_type = Option<Order>, inline)]
    order: Option<String>,
    /// `nextCursor` of the previous page, with the same sort and order (opaque).
    #[param(value_type = Option<Cursor>, inline)]
    cursor: Option<String>,
    /// Page size.
    #[param(value_type = Option<Limit>, inline)]
    limit: Option<String>,
}

/// `GET /v1/proposals/{proposalId}/votes`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProposalVotesQuery {
    /// Sort key (default `block`: block and log index).
    #[param(value_type = Option<VoteSortKey>, inline)]
    sort: Option<String>,
    /// Direction (default `desc`).
    #[param(value_type = Option<Order>, inline)]
    order: Option<String>,
    /// Only votes with this support.
    #[param(value_type = Option<Support>, inline)]
    support: Option<String>,
    /// `nextCursor` of the previous page, with the same sort and order (opaque).
    #[param(value_type = Option<Cursor>, inline)]
    cursor: Option<String>,
    /// Page size.
    #[param(value_type = Option<Limit>, inline)]
    limit: Option<String>,
}

/// `GET /v1/users/{address}/votes`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UserVotesQuery {
    /// Direction (default `desc`).
    #[param(value_type = Option<Order>, inline)]
    order: Option<String>,
    /// `nextCursor` of the previous page, with the same sort and order (opaque).
    #[param(value_type = Option<Cursor>, inline)]
    cursor: Option<String>,
    /// Page size.
    #[param(value_type = Option<Limit>, inline)]
    limit: Option<String>,
}

/// `GET /v1/users/{address}/voting-power`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VotingPowerQuery {
    /// Answer as of this block (at most the indexed block).
    #[param(value_type = Option<U64>, inline)]
    block: Option<String>,
    /// Answer at this proposal's snapshot (decimal or 0x hex).
    #[param(value_type = Option<Uint256In>, inline, rename = "proposalId")]
    proposal_id: Option<String>,
}

/// `GET /v1/users/{address}/governance-benefits`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BenefitsQuery {
    /// Answer as of this block (at most the indexed block).
    #[param(value_type = Option<U64>, inline)]
    block: Option<String>,
}

/// `GET /v1/events/governance`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GovernanceEventsQuery {
    /// Items after this position (`seq`); 0 for the start.
    #[param(value_type = Option<U64>, inline)]
    after: Option<String>,
    /// Page size.
    #[param(value_type = Option<Limit>, inline)]
    limit: Option<String>,
}

/// `GET /v1/delegates`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DelegatesQuery {
    /// `nextCursor` of the previous page, with the same sort and order (opaque).
    #[param(value_type = Option<Cursor>, inline)]
    cursor: Option<String>,
    /// Page size.
    #[param(value_type = Option<Limit>, inline)]
    limit: Option<String>,
}

/// `POST /v1/admin/cache/invalidate`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InvalidateQuery {
    /// These proposals (comma-separated, decimal or 0x hex).
    #[param(value_type = Option<Uint256List>, inline, style = Form, explode = false, rename = "proposalId")]
    proposal_id: Option<String>,
    /// These accounts (comma-separated).
    #[param(value_type = Option<AddressList>, inline, style = Form, explode = false)]
    account: Option<String>,
    /// `all`, `proposals` (the lists) or `stats` (comma-separated).
    #[param(value_type = Option<Scopes>, inline, style = Form, explode = false)]
    scope: Option<String>,
}
