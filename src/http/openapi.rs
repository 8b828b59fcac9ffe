//! The OpenAPI 3.1 document of the API (`GET /v1/openapi.json`) and its explorer (`/v1/docs`).
//!
//! The document is generated from the code: the types the handlers serialize carry
//! `#[derive(utoipa::ToSchema)]` (the domain types, the views of [`super::views`] that flatten
//! them, the problem documents of [`super::problem`], the inbound event of [`super::ingest`]),
//! and the operations come from the route table ([`super::routes::ROUTES`]: each
//! route's [`Doc`], projection and auth; `tests/openapi.rs` checks the document
//! against a running govflow and fuzzes the API with it). Page sizes come from the running
//! configuration, so `limit` is documented with the bounds the handlers enforce.
//!
//! The explorer is Swagger UI from `utoipa-swagger-ui`, whose `vendored` feature embeds the
//! distribution files at build time: nothing is fetched at build or run time.

use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, ParameterStyle, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required, Response, ResponseBuilder,
    Server,
};
use utoipa::{PartialSchema, ToSchema};
use warp::http::HeaderValue;

use super::ingest::InboundGovernanceEvent;
use super::problem::{Problem, ValidationProblem};
use super::routes::{route_of, CacheControl, Projection, Route, ROUTES};
use super::views::{
    CacheInvalidation, DelegatePage, ExecutionStatus, GovernanceAchievements, GovernanceBenefits, GovernanceEventPage, Health, ProposalDetailView,
    ProposalPage, Ready, Stats, Status, VotePage, VotingPowerView,
};
use super::{ApiState, Req};
use crate::config::HttpConfig;
pub use crate::domain::schema::{Timestamp, Uint256, Uuid};
use crate::domain::schema::{ADDRESS_IN, UINT256_IN};
use crate::domain::ProposalStatus;

type Resp = Result<warp::reply::Response, Problem>;

/// Where the document is served (the explorer loads it from here).
pub const DOCUMENT_PATH: &str = "/v1/openapi.json";
/// Where the explorer is served.
pub const EXPLORER_PATH: &str = "/v1/docs";

// ---------------------------------------------------------------------------------------------
// Schemas.

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn push<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((T::name().into_owned(), T::schema()));
    T::schemas(out);
}

/// A view that flattens a domain type (`#[serde(flatten)]`, derived as an `allOf` of the
/// inlined parts) as the one object it is on the wire: the parts' properties and required
/// members together, described as the view. Other schemas are left as derived.
fn merged(schema: RefOr<Schema>) -> RefOr<Schema> {
    let RefOr::T(Schema::AllOf(all)) = schema else { return schema };
    let parts: Vec<RefOr<Schema>> = all.items.iter().cloned().map(merged).collect();
    if !parts.iter().all(|p| matches!(p, RefOr::T(Schema::Object(_)))) {
        return RefOr::T(Schema::AllOf(all));
    }
    let mut object = ObjectBuilder::new().schema_type(Type::Object).description(all.description.clone()).build();
    for part in parts {
        if let RefOr::T(Schema::Object(o)) = part {
            object.properties.extend(o.properties);
            object.required.extend(o.required);
        }
    }
    RefOr::T(Schema::Object(object))
}

/// The governance event and feed item schemas of `schema/`, as components: one schema for the
/// feed, the achievements and their consumers.
fn versioned_event_schemas() -> Vec<(&'static str, Value)> {
    let event = adapt(
        include_str!("../../schema/governance-event.v1.json"),
        &[
            ("#/$defs/address", "#/components/schemas/Address"),
            ("#/$defs/hash", "#/components/schemas/Hash"),
            ("#/$defs/uint256", "#/components/schemas/Uint256"),
        ],
    );
    vec![("GovernanceEvent", event), ("GovernanceFeedItem", feed_item_schema())]
}

/// A schema of `schema/` (built into the binary; the unit tests parse each) as a component.
fn adapt(text: &str, defs: &[(&str, &str)]) -> Value {
    let mut v: Value = serde_json::from_str(text).expect("the schemas of schema/ are JSON");
    if let Value::Object(o) = &mut v {
        o.remove("$schema");
        o.remove("$id");
        o.remove("$defs");
    }
    let mut s = v.to_string();
    for (from, to) in defs {
        s = s.replace(from, to);
    }
    // Replacing one reference by another inside strings keeps the text JSON.
    serde_json::from_str(&s).expect("a JSON text with references renamed is JSON")
}

fn feed_item_schema() -> Value {
    adapt(include_str!("../../schema/governance-feed-item.v1.json"), &[("tag:govflow,2026:schema/governance-event/v1", "#/components/schemas/GovernanceEvent")])
}

/// Schemas whose objects the handlers project with `fields=`: no property is required.
const PROJECTED: &[&str] = &[
    "ProposalSummary",
    "Proposal",
    "Vote",
    "VotingPower",
    "Delegate",
    "GovernanceBenefits",
    "Stats",
    "ExecutionStatus",
    "GovernanceAchievements",
    "Status",
    "Health",
    "Ready",
];
/// Schemas left open: problem details may carry extension members (RFC 9457 §3.2).
const OPEN: &[&str] = &["Problem", "ValidationProblem"];
/// Request bodies: closed (unknown members are refused), but their optional members stay optional.
const REQUESTS: &[&str] = &["InboundGovernanceEvent"];

// ---------------------------------------------------------------------------------------------
// Operations.

/// A path parameter of an operation, or one the document fills in itself (the query
/// parameters are declared by the `IntoParams` structs of [`super::params`]).
#[derive(Clone, Copy)]
pub enum P {
    /// `{proposalId}`.
    ProposalId,
    /// `{address}`.
    Account,
    /// `{asset}`.
    Asset,
    /// `limit`, with the running configuration's bounds.
    Limit,
    /// `fields`: these members of the answer, or of each `items[]` element of a list.
    Fields(fn() -> Vec<String>),
}

/// What a route answers when it succeeds.
#[derive(Clone, Copy)]
pub enum Ok {
    /// 200 with a JSON body of this schema.
    Json(&'static str, &'static str),
    /// 200 with the Prometheus text format.
    Metrics,
    /// 200 with the OpenAPI document.
    Document,
    /// 200 with the explorer's page.
    Explorer,
    /// 200 with an explorer file.
    Asset,
    /// 101: a websocket.
    Websocket,
    /// 200 (or 204) from an admin action.
    Admin,
    /// 202: an inbound governance event, published on the bus.
    Inbound,
}

/// How a route is documented (its method, path, `fields` and security come from the route).
pub struct Doc {
    /// `operationId`.
    pub id: &'static str,
    /// The tag grouping it.
    pub tag: &'static str,
    /// One line.
    pub summary: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Its path parameters.
    pub params: &'static [P],
    /// Its query parameters but `fields` ([`super::params`]).
    pub query: fn() -> Vec<Parameter>,
    /// What it answers when it succeeds.
    pub ok: Ok,
    /// When the route answers 404, if it can.
    pub not_found: Option<&'static str>,
    /// The route rejects unknown query parameters with 400.
    pub strict: bool,
}

/// Files of the explorer served as `{asset}`: those of Swagger UI's distribution the page uses.
pub const EXPLORER_ASSETS: &[&str] = &[
    "index.html",
    "index.css",
    "swagger-ui.css",
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "swagger-initializer.js",
    "favicon-32x32.png",
    "favicon-16x16.png",
    "oauth2-redirect.html",
];

/// The property names of a view's derived schema, flattened parts included (the members
/// `fields=` may name), in name order.
/// Built once per type: the router asks on every request with `fields=`.
pub(crate) fn members<T: PartialSchema + 'static>() -> Vec<String> {
    static MEMBERS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<std::any::TypeId, Vec<String>>>> = std::sync::OnceLock::new();
    let cache = MEMBERS.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    cache
        .entry(std::any::TypeId::of::<T>())
        .or_insert_with(|| match merged(T::schema()) {
            RefOr::T(Schema::Object(o)) => o.properties.keys().cloned().collect(),
            _ => Vec::new(),
        })
        .clone()
}

/// The members of a feed item (`schema/governance-feed-item.v1.json`), read once.
pub(crate) fn feed_item_members() -> Vec<String> {
    static MEMBERS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    MEMBERS.get_or_init(|| feed_item_schema()["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()).clone()
}

fn str_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn comma_list(items: RefOr<Schema>) -> ArrayBuilder {
    ArrayBuilder::new().items(items).min_items(Some(1))
}

fn parameter(p: P, http: &HttpConfig) -> Parameter {
    let (name, place, description, schema, list): (&str, ParameterIn, String, RefOr<Schema>, bool) = match p {
        P::ProposalId => {
            ("proposalId", ParameterIn::Path, "On-chain proposal id, decimal or 0x hex.".into(), str_schema().pattern(Some(UINT256_IN)).into(), false)
        }
        P::Account => ("address", ParameterIn::Path, "Account address (0x hex, any case).".into(), str_schema().pattern(Some(ADDRESS_IN)).into(), false),
        P::Asset => (
            "asset",
            ParameterIn::Path,
            "A file of the explorer's distribution.".into(),
            str_schema().enum_values(Some(EXPLORER_ASSETS.iter().copied())).into(),
            false,
        ),
        P::Limit => (
            "limit",
            ParameterIn::Query,
            format!("Page size (default {}, at most `http.max_page_size` = {}).", http.default_page_size, http.max_page_size),
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(http.max_page_size))
                .default(Some(json!(http.default_page_size)))
                .into(),
            false,
        ),
        P::Fields(members) => (
            "fields",
            ParameterIn::Query,
            "Return only these members (comma-separated): of the answer, or of each element of `items` for a list.".into(),
            comma_list(str_schema().enum_values(Some(members())).into()).into(),
            true,
        ),
    };
    let mut b = ParameterBuilder::new()
        .name(name)
        .parameter_in(place.clone())
        .required(if matches!(place, ParameterIn::Path) { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(schema));
    if list {
        b = b.style(Some(ParameterStyle::Form)).explode(Some(false));
    }
    b.build()
}

fn json_response(description: &str, schema: &str) -> Response {
    ResponseBuilder::new().description(description).content("application/json", ContentBuilder::new().schema(Some(reference(schema))).build()).build()
}

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", ContentBuilder::new().schema(Some(reference("Problem"))).build())
        .build()
}

fn response_ref(name: &str) -> RefOr<Response> {
    RefOr::Ref(Ref::from_response_name(name))
}

fn operation(route: &Route, http: &HttpConfig) -> Operation {
    let op = &route.doc;
    let mut b = OperationBuilder::new().operation_id(Some(op.id)).tag(op.tag).summary(Some(op.summary)).description(Some(op.description));
    for p in op.params {
        b = b.parameter(parameter(*p, http));
    }
    let query = (op.query)();
    for q in &query {
        // The page size's bounds and default are the running configuration's.
        b = b.parameter(if q.name == "limit" { parameter(P::Limit, http) } else { q.clone() });
    }
    if let Projection::Fields(members) = route.projection {
        b = b.parameter(parameter(P::Fields(members), http));
    }
    if let Some(scheme) = route.auth.scheme() {
        b = b
            .response("401", response_ref("Unauthorized"))
            .response("403", response_ref("Forbidden"))
            .security(SecurityRequirement::new(scheme, Vec::<String>::new()));
    }
    b = match op.ok {
        Ok::Json(schema, description) => b.response("200", json_response(description, schema)),
        Ok::Metrics => b.response(
            "200",
            ResponseBuilder::new()
                .description("Prometheus text format, version 0.0.4.")
                .content("text/plain; version=0.0.4", ContentBuilder::new().schema(Some(str_schema())).build())
                .build(),
        ),
        Ok::Document => b.response(
            "200",
            ResponseBuilder::new()
                .description("The document.")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new()
                                .property("openapi", str_schema().pattern(Some("^3\\.1\\.[0-9]+$")))
                                .required("openapi")
                                .property("info", ObjectBuilder::new())
                                .required("info")
                                .property("paths", ObjectBuilder::new())
                                .required("paths"),
                        ))
                        .build(),
                )
                .build(),
        ),
        Ok::Explorer => b.response(
            "200",
            ResponseBuilder::new()
                .description("The explorer's page.")
                .content("text/html; charset=utf-8", ContentBuilder::new().schema(Some(str_schema())).build())
                .build(),
        ),
        Ok::Asset => {
            let mut r = ResponseBuilder::new().description("The file.");
            for ct in asset_content_types() {
                r = r.content(ct, ContentBuilder::new().build());
            }
            b.response("200", r.build())
        }
        Ok::Websocket => b
            .response("101", ResponseBuilder::new().description("Switching Protocols: the connection is now a websocket.").build())
            .response("426", problem_response("Upgrade Required: not a websocket upgrade request.")),
        Ok::Admin => b.response("200", json_response("The cached reads were invalidated.", "CacheInvalidation")),
        Ok::Inbound => b
            .request_body(Some(
                RequestBodyBuilder::new()
                    .description(Some("The event."))
                    .required(Some(Required::True))
                    .content("application/json", ContentBuilder::new().schema(Some(reference("InboundGovernanceEvent"))).build())
                    .build(),
            ))
            .response("202", json_response("Accepted: the event is on the bus (or was already: `duplicate`).", "InboundAccepted")),
    };
    if revalidated(route) {
        b = b.response("304", response_ref("NotModified"));
    }
    if op.strict || !op.params.is_empty() || !query.is_empty() || !matches!(route.projection, Projection::None) {
        b = b.response("400", response_ref("BadRequest"));
    }
    if let Some(d) = op.not_found {
        b = b.response("404", problem_response(d));
    }
    b = b.response("429", response_ref("TooManyRequests")).response("500", response_ref("InternalError")).response("503", response_ref("Unavailable"));
    if matches!(op.ok, Ok::Inbound) {
        b = b
            .response(
                "400",
                problem_response("The body is not JSON or not an object, it has a member an event does not have (`parameter` names the first), or a query parameter was given."),
            )
            .response("408", problem_response("The body was not received within `http.request_timeout_ms`."))
            .response("413", problem_response("The body is longer than 64 KiB."))
            .response("415", problem_response("The body is not `application/json` (UTF-8)."))
            .response(
                "422",
                ResponseBuilder::new()
                    .description("Members of the event are invalid: `invalidParams` lists each (`name`, `reason`).")
                    .content("application/problem+json", ContentBuilder::new().schema(Some(reference("ValidationProblem"))).build())
                    .build(),
            )
            .response("502", problem_response("The bus refused the event (the error is logged); it was not published: retry later."))
            .response("503", response_ref("BusUnavailable"));
    }
    b.build()
}

/// Reads that carry an `ETag` and answer 304 to a matching `If-None-Match` (the HTTP
/// conventions: every successful `/v1` read but the status and the websocket).
fn revalidated(route: &Route) -> bool {
    route.method == "GET" && route.cache_control == CacheControl::Public && !matches!(route.doc.ok, Ok::Websocket)
}

/// Content types of [`EXPLORER_ASSETS`], as the asset route sends them.
fn asset_content_types() -> Vec<String> {
    let mut v: Vec<String> = EXPLORER_ASSETS.iter().map(|a| asset_content_type(a)).collect();
    v.sort();
    v.dedup();
    v
}

fn asset_content_type(name: &str) -> String {
    let ct = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("png") => "image/png",
        Some("map") => "application/json",
        _ => "application/octet-stream",
    };
    ct.to_string()
}

const DESCRIPTION: &str = "govflow indexes an OpenZeppelin Governor DAO exactly (proposals, votes, status history and \
voting power, equal to the contracts' own views, across reorgs) and serves it over this API.

**Conventions.** JSON in camelCase; uint256 values as decimal strings; addresses and hashes as lower-case 0x hex \
(accepted in any case); times as RFC 3339 (UTC). Lists are keyset-paginated: `{ \"items\": [...], \"nextCursor\": \"…\" | null }`; \
pass `cursor` for the next page (cursors are opaque and belong to one listing, sort and order). The reads of \
data take `fields=a,b,…` to return only some members (of each element of `items` for a list); without it every \
documented member is present. Errors are `application/problem+json` (RFC 9457) with a stable `type` \
(`tag:govflow,2026:problem/<kind>`: `invalid-parameter`, `not-found`, `method-not-allowed`, `unavailable`, \
`timeout`, `rate-limited`, `internal`, …), the request's `requestId` and, for 400s, the offending `parameter`. A \
method a route does not support answers 405 (`MethodNotAllowed`); an unknown path answers 404. Every answer \
carries `X-Request-Id`; reads carry an `ETag` (send `If-None-Match` for a 304) and `Cache-Control`; bodies are \
compressed (br, gzip) when the client accepts it; CORS follows `http.cors_origins` (a refused origin gets 403); \
past `http.rate_limit_per_second` a client gets 429 with `Retry-After`.

**Versioning.** The API is under `/v1` (the probes `/healthz`, `/readyz` and `/metrics` aside). Within `/v1` \
changes are additive only: new routes, new optional query parameters, new members in response objects, new values \
in open sets (problem `type`s, governance event kinds, `executionState`). Clients must ignore members they do not \
know. Anything else (removing or renaming a route, parameter or member, changing a type, format, meaning or \
default, making a parameter required) needs `/v2`, served alongside `/v1`. A route due to go is announced with \
`Deprecation`, `Sunset` and `Link: <successor>; rel=\"successor-version\"` headers at least six months ahead. \
This document describes this release exactly: its objects list every member served today.";

/// The OpenAPI document for a server with these HTTP settings.
pub fn openapi(http: &HttpConfig) -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in ROUTES {
        let method = if route.method == "POST" { HttpMethod::Post } else { HttpMethod::Get };
        paths = paths.path(route.path, PathItem::new(method, operation(route, http)));
    }
    let mut schemas = Vec::new();
    push::<ProposalPage>(&mut schemas);
    push::<ProposalDetailView>(&mut schemas);
    push::<VotePage>(&mut schemas);
    push::<ExecutionStatus>(&mut schemas);
    push::<Stats>(&mut schemas);
    push::<VotingPowerView>(&mut schemas);
    push::<GovernanceBenefits>(&mut schemas);
    push::<GovernanceAchievements>(&mut schemas);
    push::<GovernanceEventPage>(&mut schemas);
    push::<DelegatePage>(&mut schemas);
    push::<Status>(&mut schemas);
    push::<Health>(&mut schemas);
    push::<Ready>(&mut schemas);
    push::<Problem>(&mut schemas);
    push::<ProposalStatus>(&mut schemas);
    push::<CacheInvalidation>(&mut schemas);
    push::<InboundGovernanceEvent>(&mut schemas);
    push::<super::ingest::InboundAccepted>(&mut schemas);
    push::<ValidationProblem>(&mut schemas);
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas.into_iter().map(|(name, schema)| (name, merged(schema))))
        .response(
            "NotModified",
            ResponseBuilder::new().description("Not Modified: the `If-None-Match` of the request names the answer's current `ETag`.").build(),
        )
        .response("BadRequest", problem_response("A parameter is invalid (`parameter` names it), or the query string is malformed."))
        .response(
            "Unauthorized",
            problem_response("No bearer token: send `Authorization: Bearer <token>` with the route's token (`http.admin_token` for the admin routes, `http.events_token` for `POST /v1/events/governance`)."),
        )
        .response("Forbidden", problem_response("The bearer token is not the route's token."))
        .response("MethodNotAllowed", problem_response("The route does not support this method."))
        .response("TooManyRequests", problem_response("Rate limit reached (`http.rate_limit_per_second`); retry later."))
        .response("InternalError", problem_response("The server failed to answer (a store failure); the error is logged."))
        .response(
            "BusUnavailable",
            problem_response("The bus is unavailable, or the request took longer than `http.request_timeout_ms`: the event may not have been published; retry the same request after `Retry-After` (its id is deduplicated)."),
        )
        .response(
            "Unavailable",
            problem_response("Not ready (backfill in progress or the chain node unreachable), or the request took longer than `http.request_timeout_ms`."),
        )
        .security_scheme(
            "adminToken",
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).description(Some("The admin token (`http.admin_token`).")).build()),
        )
        .security_scheme(
            "eventsToken",
            SecurityScheme::Http(
                Http::builder().scheme(HttpAuthScheme::Bearer).description(Some("The token of systems sending governance events (`http.events_token`).")).build(),
            ),
        )
        .build();
    let tags = [
        ("proposals", "Proposals, their votes and execution."),
        ("users", "Accounts: votes, voting power, benefits, achievements."),
        ("delegates", "Delegates ranked by weight."),
        ("events", "The governance event feed for the achievement system, and the events other systems send it."),
        ("websocket", "Live updates."),
        ("operations", "Status, health, readiness and metrics."),
        ("documentation", "This document and its explorer."),
        ("admin", "Administration (bearer token)."),
    ]
    .map(|(name, d)| TagBuilder::new().name(name).description(Some(d)).build());
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("govflow")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build()))
                .build(),
        )
        .servers(Some([Server::new("/")]))
        .paths(paths.build())
        .components(Some(components))
        .tags(Some(tags))
        .build()
}

/// The document as served: [`openapi`] with the closed objects and the versioned event schemas.
pub fn document_json(http: &HttpConfig) -> Value {
    // Strings, maps with string keys and JSON values: writing the document cannot fail.
    let mut doc = serde_json::to_value(openapi(http)).expect("the OpenAPI document is always written");
    if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
        for (name, schema) in schemas.iter_mut() {
            close(name, schema);
        }
        // Paging of the event feed refers to the schema of `schema/` (the placeholders above).
        // With `fields`, the router keeps only some members of each item: the items are feed
        // items (`GovernanceFeedItem`) with every member optional.
        let mut item = feed_item_schema();
        if let Value::Object(o) = &mut item {
            o.remove("required");
            o.remove("title");
            o.insert("description".into(), json!("A `GovernanceFeedItem`; with `fields`, only the members named."));
        }
        patch_ref(
            schemas,
            "GovernanceEventPage",
            "/properties/items",
            json!({ "type": "array", "items": item, "description": "Feed items after `after`, in order." }),
        );
        patch_ref(
            schemas,
            "Achievement",
            "/properties/earnedBy",
            json!({ "$ref": "#/components/schemas/GovernanceEvent", "description": "The governance event that earned it." }),
        );
        if let Some(Value::Object(by_day)) = schemas.get_mut("Stats").and_then(|s| s.pointer_mut("/properties/votesByDay")) {
            by_day.insert("propertyNames".into(), json!({ "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$" }));
            by_day.insert("maxProperties".into(), json!(crate::store::STATS_DAYS));
        }
        if let Some(Value::Object(by_status)) = schemas.get_mut("Stats").and_then(|s| s.pointer_mut("/properties/byStatus")) {
            by_status.insert("propertyNames".into(), json!({ "enum": ProposalStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>() }));
        }
        for (name, schema) in versioned_event_schemas() {
            schemas.insert(name.into(), schema);
        }
    }
    document_headers(&mut doc);
    doc
}

/// Documents the headers the HTTP conventions put on answers (`http::conventions`): a request
/// id on every answer, validators and caching on reads, `Retry-After` and `WWW-Authenticate`
/// where they apply.
fn document_headers(doc: &mut Value) {
    fn header(description: &str, required: bool) -> Value {
        json!({ "description": description, "required": required, "schema": { "type": "string" } })
    }
    let request_id =
        header("The request's id: the client's `X-Request-Id` when sane, else a new one; also `requestId` in problem bodies and in the log.", true);
    let add = |r: &mut Value, name: &str, h: &Value| {
        if let Value::Object(o) = r {
            if !o.contains_key("$ref") {
                let headers = o.entry("headers").or_insert_with(|| json!({}));
                headers[name] = h.clone();
            }
        }
    };
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        for (path, item) in paths.iter_mut() {
            let Value::Object(ops) = item else { continue };
            for (method, op) in ops.iter_mut() {
                let cached = route_of(&method.to_uppercase(), path).is_some_and(revalidated);
                let Some(Value::Object(responses)) = op.get_mut("responses") else { continue };
                for (status, r) in responses.iter_mut() {
                    add(r, "X-Request-Id", &request_id);
                    if status == "200" && cached {
                        add(r, "ETag", &header("The answer's validator: send it back as `If-None-Match` to get 304 while it is unchanged.", true));
                        add(r, "Cache-Control", &header("`public, max-age=5` (reads move with the chain).", true));
                    }
                }
            }
        }
    }
    if let Some(Value::Object(responses)) = doc.pointer_mut("/components/responses") {
        for (name, r) in responses.iter_mut() {
            add(r, "X-Request-Id", &request_id);
            match name.as_str() {
                "NotModified" => add(r, "ETag", &header("The current validator.", true)),
                "Unauthorized" => add(
                    r,
                    "WWW-Authenticate",
                    &header("`Bearer realm=\"govflow-admin\"` (admin routes) or `Bearer realm=\"govflow-events\"` (`POST /v1/events/governance`).", true),
                ),
                "TooManyRequests" => add(r, "Retry-After", &header("Seconds to wait.", true)),
                "MethodNotAllowed" => add(r, "Allow", &header("The methods the route supports (RFC 9110).", true)),
                "Unavailable" => add(r, "Retry-After", &header("Seconds to wait (timeouts and refused websockets).", false)),
                "BusUnavailable" => add(r, "Retry-After", &header("Seconds to wait before retrying.", true)),
                _ => {}
            }
        }
    }
}

/// Puts real values of the indexed chain as examples of the path parameters (the newest
/// proposal and its proposer), so the explorer's "Try it out" and the fuzzers start from data.
fn add_examples(doc: &mut Value, state: &ApiState) -> Result<(), Problem> {
    let q = crate::store::ProposalQuery {
        statuses: Vec::new(),
        proposer: None,
        created_from: None,
        created_to: None,
        end_from: None,
        end_to: None,
        sort: crate::store::ProposalSort::CreatedAt,
        descending: true,
        after: None,
        limit: 1,
    };
    let Some(p) = state.store.list_proposals(&q)?.items.into_iter().next() else { return Ok(()) };
    let examples = [("proposalId", p.proposal_id.to_string()), ("address", p.proposer.to_hex())];
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        for op in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|ops| ops.values_mut()) {
            for param in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                if param["in"] != "path" {
                    continue;
                }
                if let Some((_, example)) = examples.iter().find(|(name, _)| param["name"] == *name) {
                    param["example"] = json!(example);
                }
            }
        }
    }
    Ok(())
}

fn patch_ref(schemas: &mut Map<String, Value>, schema: &str, pointer: &str, with: Value) {
    if let Some(slot) = schemas.get_mut(schema).and_then(|s| s.pointer_mut(pointer)) {
        *slot = with;
    }
}

/// Closes an object schema: the handlers always write every property (null when absent) and
/// nothing else, except where `fields=` projects ([`PROJECTED`]) or extensions are allowed.
fn close(name: &str, schema: &mut Value) {
    let Value::Object(o) = schema else { return };
    let Some(Value::Object(props)) = o.get("properties") else { return };
    if OPEN.contains(&name) {
        return;
    }
    let keys: Vec<Value> = props.keys().map(|k| Value::String(k.clone())).collect();
    if PROJECTED.contains(&name) {
        o.remove("required");
    } else if REQUESTS.contains(&name) {
        // Optional members stay optional (as derived).
    } else {
        o.insert("required".into(), Value::Array(keys));
    }
    o.insert("additionalProperties".into(), Value::Bool(false));
}

/// `GET /v1/openapi.json`.
pub fn document(state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    let mut doc = document_json(&state.http);
    add_examples(&mut doc, state)?;
    Ok(super::json(&doc))
}

fn explorer_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(
                utoipa_swagger_ui::Config::new([DOCUMENT_PATH])
                    // The online validator badge would call validator.swagger.io.
                    .validator_url("none")
                    .deep_linking(true)
                    .display_request_duration(true)
                    .filter(true),
            )
        })
        .clone()
}

fn file_response(name: &str) -> Resp {
    let file = utoipa_swagger_ui::serve(name, explorer_config())
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(|| Problem::not_found(format!("the explorer has no file {name:?}")))?;
    let mut body = file.bytes.into_owned();
    if name == "index.html" {
        // Served at /v1/docs (no trailing slash) too: relative links must resolve under /v1/docs/.
        let page = String::from_utf8_lossy(&body).replacen("<head>", &format!("<head>\n    <base href=\"{EXPLORER_PATH}/\">"), 1).replacen(
            "<title>Swagger UI</title>",
            "<title>govflow API explorer</title>",
            1,
        );
        body = page.into_bytes();
    }
    let mut r = warp::reply::Response::new(body.into());
    let ct = HeaderValue::from_str(&asset_content_type(name)).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    r.headers_mut().insert("content-type", ct);
    Ok(r)
}

/// `GET /v1/docs`: the explorer's page.
pub fn explorer(_state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    file_response("index.html")
}

/// `GET /v1/docs/{asset}`: a file of the explorer.
pub fn asset(_state: &ApiState, req: &Req<'_>) -> Resp {
    req.only(&[])?;
    // `/v1/docs/{asset}`: the third segment; only the files the page uses (no source maps).
    let name = req.segments.get(2).copied().unwrap_or("");
    if !EXPLORER_ASSETS.contains(&name) {
        return Err(Problem::not_found(format!("the explorer has no file {name:?}")));
    }
    file_response(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        document_json(&HttpConfig::default())
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = doc();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        for r in ROUTES {
            assert!(documented.contains(&(r.method.to_string(), r.path.to_string())), "{} {} is not documented", r.method, r.path);
        }
        for (method, path) in &documented {
            assert!(route_of(method, path).is_some(), "{method} {path} is documented but not routed");
        }
    }

    #[test]
    fn references_resolve() {
        let doc = doc();
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"").skip(1) {
            let target = &part[..part.find('"').unwrap()];
            let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("external reference {target}"));
            assert!(doc.pointer(pointer).is_some(), "dangling reference {target}");
        }
    }

    #[test]
    fn document_is_openapi_3_1_with_the_crate_version() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(doc["servers"][0]["url"], "/");
        let limit = doc["paths"]["/v1/proposals"]["get"]["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap().clone();
        assert_eq!(limit["schema"]["maximum"], 500);
        assert_eq!(limit["schema"]["default"], 50);
    }

    #[test]
    fn explorer_files_are_embedded() {
        for name in EXPLORER_ASSETS {
            assert!(utoipa_swagger_ui::serve(name, explorer_config()).unwrap().is_some(), "{name}");
        }
        let init = utoipa_swagger_ui::serve("swagger-initializer.js", explorer_config()).unwrap().unwrap();
        let init = String::from_utf8_lossy(&init.bytes);
        assert!(init.contains(DOCUMENT_PATH), "{init}");
        assert!(!init.contains("petstore"), "{init}");
    }
}
