//! `POST /v1/events/governance`: governance-related events other systems send in (the guide's
//! §4.3), validated and published on `govflow.<chainId>.inbound.<kind>` for the achievement
//! trigger system.

use std::sync::atomic::Ordering;

use serde_json::{json, Map, Value};
use warp::http::StatusCode;

use super::problem::{InvalidParam, Problem, ValidationProblem};
use super::{ApiState, Body, Req};
use crate::domain::{Address, U256};

type Resp = Result<warp::reply::Response, Problem>;

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

// The request body as deserialized: each member as the client sent it (null and absent alike
// are `None`), so that `validate_inbound` can report every invalid member at once with its own
// message; the schema documents what a valid member is.
/// A governance-related event another system sends (`POST /v1/events/governance`). Members
/// may be absent or null when optional; any other member is refused (400).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboundGovernanceEvent {
    /// Idempotency key, the event's `Nats-Msg-Id` on the bus: a second event with the same id
    /// (within the bus's deduplication window) is not published again. Without it, the id is a
    /// UUID v5 of the event's canonical JSON, so an identical retry gets the same id (and two
    /// identical events without `id` or `occurredAt` count once).
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9:._-]{1,128}$", min_length = 1, max_length = 128, example = "forum-4711")]
    pub id: Option<Value>,
    /// What happened: two or more dot-separated lower-case names (an open set), e.g.
    /// `forum.post_created`, `proposal.discussed`. Published on
    /// `govflow.<chainId>.inbound.<kind with . as _>`.
    #[schema(value_type = String, pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$", max_length = 64, example = "forum.post_created")]
    pub kind: Option<Value>,
    /// The account the event is about: 0x and 40 hex digits, any case (published in lower case).
    #[schema(value_type = String, pattern = "^0[xX][0-9a-fA-F]{40}$", example = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8")]
    pub account: Option<Value>,
    /// The proposal the event is about, if any: a uint256 as a decimal string.
    #[schema(value_type = Option<String>, pattern = "^[0-9]{1,78}$", example = "42")]
    pub proposal_id: Option<Value>,
    /// The sending system.
    #[schema(value_type = String, min_length = 1, max_length = 64, example = "forum")]
    pub source: Option<Value>,
    /// When it happened, RFC 3339 (any offset; published in UTC). 1970 to 9999, no leap seconds.
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-01-31T12:00:00Z")]
    pub occurred_at: Option<Value>,
    /// Kind-specific data: a JSON object of at most 16 KiB serialised (default `{}`).
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
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

/// Parses an RFC 3339 date-time (`T` or `t`, a fraction of any length, `Z`, `z` or a `±hh:mm`
/// offset) into unix seconds and nanoseconds; `Err` says what is wrong. Leap seconds and times
/// before 1970 or after 9999 are refused. The calendar is humantime's: this only splits off the
/// offset (humantime reads UTC only) and refuses what humantime tolerates (`:60`, an empty
/// fraction).
pub(crate) fn parse_rfc3339(s: &str) -> Result<(u64, u32), String> {
    const SHAPE: &str = "not an RFC 3339 date-time (YYYY-MM-DDThh:mm:ss[.fraction] then Z or ±hh:mm)";
    let b = s.as_bytes();
    let digits = |from: usize, to: usize| -> Result<u32, String> {
        match b.get(from..to) {
            Some(d) if d.iter().all(u8::is_ascii_digit) => Ok(d.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0'))),
            _ => Err(SHAPE.to_string()),
        }
    };
    if b.len() < 20 || !matches!(b[10], b'T' | b't') {
        return Err(SHAPE.into());
    }
    // The offset: `Z`, `z` or `±hh:mm` at the end; the local time before it.
    let (local, offset) = match b[b.len() - 1] {
        b'Z' | b'z' => (&s[..s.len() - 1], 0i64),
        _ if b.len() >= 25 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':' => {
            let at = b.len() - 6;
            let (oh, om) = (digits(at + 1, at + 3)?, digits(at + 4, at + 6)?);
            if oh > 23 || om > 59 {
                return Err(format!("the offset {} is out of range", &s[at..]));
            }
            let o = i64::from(oh * 3600 + om * 60);
            (&s[..at], if b[at] == b'-' { -o } else { o })
        }
        _ => return Err(SHAPE.into()),
    };
    // humantime accepts an empty fraction and anything but digits there is its error.
    if local.len() != 19 && (local.as_bytes()[19] != b'.' || local.len() == 20 || !local.as_bytes()[20..].iter().all(u8::is_ascii_digit)) {
        return Err(SHAPE.into());
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let (hour, minute, second) = (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?);
    let utc = format!("{}T{}Z", &local[..10], &local[11..]);
    let time = match humantime::parse_rfc3339(&utc) {
        Ok(t) => t,
        Err(humantime::TimestampError::OutOfRange) => {
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            return Err(if !(1..=12).contains(&month) {
                format!("there is no month {month}")
            } else if day == 0 || day > month_days[month as usize - 1] {
                format!("{year:04}-{month:02} has no day {day}")
            } else if hour > 23 || minute > 59 {
                format!("there is no time {hour:02}:{minute:02}")
            } else {
                "times before 1970-01-01T00:00:00Z are not accepted".into()
            });
        }
        Err(_) => return Err(SHAPE.into()),
    };
    if second > 59 {
        return Err("leap seconds (:60) are not accepted".into());
    }
    let since = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| SHAPE.to_string())?;
    let secs = since.as_secs() as i64 - offset;
    if secs < 0 {
        return Err("times before 1970-01-01T00:00:00Z are not accepted".into());
    }
    if secs >= YEAR_10000 {
        return Err("times after 9999-12-31T23:59:59Z are not accepted".into());
    }
    Ok((secs as u64, since.subsec_nanos()))
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
fn validate_inbound(e: &InboundGovernanceEvent) -> Result<Inbound, Vec<(&'static str, String)>> {
    let mut errors: Vec<(&'static str, String)> = Vec::new();

    let id = match &e.id {
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
    let kind = match &e.kind {
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
    let account = match &e.account {
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
    let proposal_id = match &e.proposal_id {
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
    let source = match &e.source {
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
    let occurred_at = match &e.occurred_at {
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
    let data = match &e.data {
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
        // A `Value` (string keys only) is always written.
        uuid::Uuid::new_v5(&INBOUND_ID_NAMESPACE, &serde_json::to_vec(&body).expect("a JSON value is always written")).to_string()
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
    let invalid = errors.iter().map(|(name, reason)| InvalidParam { name: name.to_string(), reason: reason.clone() }).collect();
    tracing::debug!(target: "http", invalid = ?names, "inbound event refused");
    ValidationProblem::new(p, invalid).response()
}

/// The request body as an event's members, or the 400/408/413/415 problem.
fn inbound_body(state: &ApiState, req: &Req<'_>) -> Result<InboundGovernanceEvent, Problem> {
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
    // Every member is a JSON value (null as `None`) and unknown ones were refused above: this
    // cannot fail, but if it did it would be a 500, not a silently empty event.
    serde_json::from_value(Value::Object(o)).map_err(|e| Problem::internal(&e))
}

/// `POST /v1/events/governance` (bearer `http.events_token`, checked by the router; 404 without
/// one configured):
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
    let envelope = crate::bus::Envelope::json(subject.clone(), id.clone(), &payload).map_err(|e| Box::new(("error", Err(Problem::internal(&e)))))?;
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
            // `Cache-Control: no-store` comes from the route table.
            match super::to_json(&accepted) {
                Ok(v) => Ok((super::json_status(&v, StatusCode::ACCEPTED), ack.duplicate)),
                Err(p) => Err(Box::new(("accepted", Err(p)))),
            }
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
        let parse = |s: &str| {
            validate_inbound(&serde_json::from_str::<InboundGovernanceEvent>(s).unwrap()).map_err(|e| e.into_iter().map(|(n, _)| n).collect::<Vec<_>>())
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
