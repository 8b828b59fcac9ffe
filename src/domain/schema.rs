//! How the domain's value types are written in JSON, as OpenAPI schemas: the schema derives of
//! the domain types refer to these, so the API document is generated from the types themselves.

use std::borrow::Cow;

use serde_json::json;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::{Address, HexBytes, B256};

/// An address as served.
pub const ADDRESS_OUT: &str = "^0x[0-9a-f]{40}$";
/// An address as accepted.
pub const ADDRESS_IN: &str = "^0[xX][0-9a-fA-F]{40}$";
/// A 32-byte hash as served.
pub const HASH_OUT: &str = "^0x[0-9a-f]{64}$";
/// A uint256 as served.
pub const UINT256_OUT: &str = "^(0|[1-9][0-9]{0,77})$";
/// A uint256 as accepted.
pub const UINT256_IN: &str = "^(0x[0-9a-fA-F]{1,64}|[0-9]{1,78})$";

/// A string schema with a pattern, a description and an example.
pub fn string_schema(pattern: &str, description: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).description(Some(description)).examples([json!(example)]).into()
}

/// A uint256 as served: a decimal string (JSON numbers cannot hold 2^256).
pub struct Uint256;

impl PartialSchema for Uint256 {
    fn schema() -> RefOr<Schema> {
        string_schema(UINT256_OUT, "An unsigned 256-bit integer as a decimal string.", "42000000000000000000")
    }
}
impl ToSchema for Uint256 {
    fn name() -> Cow<'static, str> {
        "Uint256".into()
    }
}

/// A time as served: RFC 3339, UTC, whole seconds.
pub struct Timestamp;

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime)))
            .description(Some("A time, RFC 3339 in UTC (block times are whole seconds)."))
            .examples([json!("2026-01-31T12:00:00Z")])
            .into()
    }
}
impl ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        "Timestamp".into()
    }
}

/// A stable record id (UUID v5 derived from chain data).
pub struct Uuid;

impl PartialSchema for Uuid {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uuid".into())))
            .pattern(Some("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"))
            .description(Some("A stable id derived from chain data (UUID v5): the same data always gets the same id."))
            .into()
    }
}
impl ToSchema for Uuid {
    fn name() -> Cow<'static, str> {
        "Uuid".into()
    }
}

impl PartialSchema for Address {
    fn schema() -> RefOr<Schema> {
        string_schema(ADDRESS_OUT, "A 20-byte account or contract address, lower-case 0x hex.", "0x70997970c51812dc3a010c7d01b50e0d17dc79c8")
    }
}
impl ToSchema for Address {
    fn name() -> Cow<'static, str> {
        "Address".into()
    }
}

impl PartialSchema for B256 {
    fn schema() -> RefOr<Schema> {
        string_schema(
            HASH_OUT,
            "A 32-byte hash (block, transaction, timelock operation), lower-case 0x hex.",
            "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060",
        )
    }
}
impl ToSchema for B256 {
    fn name() -> Cow<'static, str> {
        "Hash".into()
    }
}

impl PartialSchema for HexBytes {
    fn schema() -> RefOr<Schema> {
        string_schema("^0x([0-9a-f]{2})*$", "Bytes as lower-case 0x hex.", "0x55241077000000000000000000000000000000000000000000000000000000000000002a")
    }
}
impl ToSchema for HexBytes {
    fn name() -> Cow<'static, str> {
        "HexBytes".into()
    }
}
