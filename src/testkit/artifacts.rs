//! The compiled contracts (`contracts/artifacts/*.json`, written by
//! `node scripts/compile-contracts.js`), embedded in the binary so that the demo needs no
//! checkout, and decoders that turn selectors and revert data back into readable names using
//! their ABIs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use ethers::abi::{Abi, ParamType, Token};
use ethers::contract::BaseContract;
use ethers::types::{Bytes, U256};

use super::TestkitError;

/// The voting token (ERC20Votes, block-number clock).
pub const GOV_TOKEN: &str = "GovToken";
/// The voting token with a timestamp clock.
pub const GOV_TOKEN_TIMESTAMP: &str = "GovTokenTimestamp";
/// OpenZeppelin's TimelockController, as the test stack deploys it.
pub const GOV_TIMELOCK: &str = "GovTimelock";
/// The test stack's governor (TimelockControl, late quorum, simple counting).
pub const TEST_GOVERNOR: &str = "TestGovernor";
/// The test governor in front of a Compound timelock.
pub const TEST_GOVERNOR_COMPOUND: &str = "TestGovernorCompound";
/// Compound's Timelock.
pub const COMPOUND_TIMELOCK: &str = "CompoundTimelock";
/// The CultureBridge achievement NFT.
pub const CB_ACHIEVEMENT_NFT: &str = "CBAchievementNFT";
/// The CultureBridge benefit executor (checkpointed NFT bonuses, special benefits).
pub const CB_BENEFIT_EXECUTOR: &str = "CBBenefitExecutor";
/// The CultureBridge voting manager (token votes + NFT bonus), the governor's vote source.
pub const CB_VOTING_MANAGER: &str = "CBVotingManager";
/// The CultureBridge TimelockController.
pub const CB_TIMELOCK: &str = "CBTimelock";
/// The CultureBridge governor.
pub const CB_GOVERNOR_CORE: &str = "CBGovernorCore";
/// The contract proposals call (`setValue`).
pub const TARGET: &str = "Target";

const EMBEDDED: [(&str, &str); 12] = [
    (GOV_TOKEN, include_str!("../../contracts/artifacts/GovToken.json")),
    (GOV_TOKEN_TIMESTAMP, include_str!("../../contracts/artifacts/GovTokenTimestamp.json")),
    (GOV_TIMELOCK, include_str!("../../contracts/artifacts/GovTimelock.json")),
    (TEST_GOVERNOR, include_str!("../../contracts/artifacts/TestGovernor.json")),
    (TEST_GOVERNOR_COMPOUND, include_str!("../../contracts/artifacts/TestGovernorCompound.json")),
    (COMPOUND_TIMELOCK, include_str!("../../contracts/artifacts/CompoundTimelock.json")),
    (CB_ACHIEVEMENT_NFT, include_str!("../../contracts/artifacts/CBAchievementNFT.json")),
    (CB_BENEFIT_EXECUTOR, include_str!("../../contracts/artifacts/CBBenefitExecutor.json")),
    (CB_VOTING_MANAGER, include_str!("../../contracts/artifacts/CBVotingManager.json")),
    (CB_TIMELOCK, include_str!("../../contracts/artifacts/CBTimelock.json")),
    (CB_GOVERNOR_CORE, include_str!("../../contracts/artifacts/CBGovernorCore.json")),
    (TARGET, include_str!("../../contracts/artifacts/Target.json")),
];

/// One compiled contract.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Contract name, as the artifact spells it.
    pub contract_name: String,
    /// Its ABI.
    pub abi: Abi,
    /// Creation bytecode.
    pub bytecode: Bytes,
    /// Runtime bytecode.
    pub deployed_bytecode: Bytes,
    /// Hash of the sources it was compiled from (`0x` + 64 hex digits).
    pub source_hash: String,
}

impl Artifact {
    /// The ABI wrapped for encoding calls and decoding outputs and events.
    pub fn base(&self) -> BaseContract {
        BaseContract::from(self.abi.clone())
    }
}

fn parse(text: &str) -> Result<Artifact, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let field = |name: &str| v.get(name).and_then(|x| x.as_str()).map(str::to_owned).ok_or_else(|| format!("missing string field {name:?}"));
    let hex_field = |name: &str| -> Result<Bytes, String> {
        let raw = hex::decode(field(name)?.trim_start_matches("0x")).map_err(|e| format!("{name}: {e}"))?;
        Ok(Bytes::from(raw))
    };
    let abi: Abi = serde_json::from_value(v.get("abi").cloned().ok_or("missing field \"abi\"")?).map_err(|e| format!("abi: {e}"))?;
    let bytecode = hex_field("bytecode")?;
    if bytecode.is_empty() {
        return Err("empty bytecode".into());
    }
    Ok(Artifact { contract_name: field("contractName")?, abi, bytecode, deployed_bytecode: hex_field("deployedBytecode")?, source_hash: field("sourceHash")? })
}

fn all() -> &'static Result<BTreeMap<String, Artifact>, TestkitError> {
    static ALL: OnceLock<Result<BTreeMap<String, Artifact>, TestkitError>> = OnceLock::new();
    ALL.get_or_init(|| {
        EMBEDDED
            .iter()
            .map(|(name, text)| {
                let bad = |message: String| TestkitError::Artifact { name: (*name).to_owned(), message };
                let a = parse(text).map_err(bad)?;
                // The key is what callers ask for; a renamed contract must not hide behind it.
                if a.contract_name != *name {
                    return Err(bad(format!("the artifact is for contract {:?}", a.contract_name)));
                }
                Ok(((*name).to_owned(), a))
            })
            .collect()
    })
}

/// Every embedded artifact, by contract name.
pub fn artifacts() -> Result<&'static BTreeMap<String, Artifact>, TestkitError> {
    all().as_ref().map_err(Clone::clone)
}

/// The embedded artifact `name` (one of the constants of this module).
pub fn artifact(name: &str) -> Result<&'static Artifact, TestkitError> {
    let map = artifacts()?;
    map.get(name).ok_or_else(|| TestkitError::Artifact {
        name: name.to_owned(),
        message: format!(
            "not embedded in this binary (have: {:?}); add it to testkit::artifacts after `node scripts/compile-contracts.js`",
            map.keys().collect::<Vec<_>>()
        ),
    })
}

/// `name(type,…)` of the function whose selector starts `calldata`, searched in every ABI.
pub fn function_name(calldata: &[u8]) -> Option<String> {
    let selector: [u8; 4] = calldata.get(..4)?.try_into().ok()?;
    artifacts()
        .ok()?
        .values()
        .find_map(|a| a.abi.functions().find(|f| f.short_signature() == selector).map(|f| f.signature().split(':').next().unwrap_or_default().to_owned()))
}

/// Human-readable revert reason: `Error(string)`, `Panic(uint256)` with its meaning, or a custom
/// error declared in one of the ABIs (`GovernorUnexpectedProposalState(…)`, with the states
/// spelled out).
pub fn decode_revert(data: &[u8]) -> String {
    if data.is_empty() {
        return "no revert data".to_owned();
    }
    if data.len() < 4 {
        return format!("malformed revert data 0x{}", hex::encode(data));
    }
    let (selector, body) = data.split_at(4);
    if selector == [0x08, 0xc3, 0x79, 0xa0] {
        if let Ok(tokens) = ethers::abi::decode(&[ParamType::String], body) {
            return format!("Error({})", format_tokens(&tokens));
        }
    }
    if selector == [0x4e, 0x48, 0x7b, 0x71] {
        if let Ok(tokens) = ethers::abi::decode(&[ParamType::Uint(256)], body) {
            let code = tokens[0].clone().into_uint().unwrap_or_default();
            return format!("Panic(0x{code:x}: {})", panic_meaning(code));
        }
    }
    for a in artifacts().map(BTreeMap::values).into_iter().flatten() {
        for err in a.abi.errors() {
            if err.signature().as_bytes()[..4] == *selector {
                if let Ok(tokens) = err.decode(body) {
                    let mut out = format!("{}({})", err.name, format_tokens(&tokens));
                    if err.name == "GovernorUnexpectedProposalState" {
                        out.push_str(&explain_state_error(&tokens));
                    }
                    return out;
                }
            }
        }
    }
    format!("unknown revert data 0x{}", hex::encode(data))
}

const STATE_NAMES: [&str; 8] = ["Pending", "Active", "Canceled", "Defeated", "Succeeded", "Queued", "Expired", "Executed"];

/// ` [state Pending; expected Active]` for GovernorUnexpectedProposalState(id, current, bitmap).
fn explain_state_error(tokens: &[Token]) -> String {
    let current = tokens.get(1).and_then(|t| t.clone().into_uint()).map(|u| u.low_u64() as usize);
    let bitmap = tokens.get(2).and_then(|t| t.clone().into_fixed_bytes()).and_then(|b| b.last().copied());
    match (current, bitmap) {
        (Some(c), Some(bits)) => {
            let expected: Vec<&str> = STATE_NAMES.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, n)| *n).collect();
            format!(" [state {}; expected {}]", STATE_NAMES.get(c).unwrap_or(&"?"), expected.join(" or "))
        }
        _ => String::new(),
    }
}

fn panic_meaning(code: U256) -> &'static str {
    match code.low_u64() {
        0x01 => "assertion failed",
        0x11 => "arithmetic overflow/underflow",
        0x12 => "division by zero",
        0x21 => "invalid enum value",
        0x22 => "bad storage byte array",
        0x31 => "pop on empty array",
        0x32 => "array index out of bounds",
        0x41 => "out of memory",
        0x51 => "call to zero-initialized function",
        _ => "unknown panic code",
    }
}

/// Formats ABI tokens for messages: addresses and bytes as 0x-hex, integers in decimal.
pub fn format_tokens(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match t {
            Token::Address(a) => write!(out, "{a:?}"),
            Token::Bytes(b) | Token::FixedBytes(b) => write!(out, "0x{}", hex::encode(b)),
            Token::Uint(u) => write!(out, "{u}"),
            Token::Int(i) => write!(out, "{}", ethers::types::I256::from_raw(*i)),
            Token::Bool(b) => write!(out, "{b}"),
            Token::String(s) => write!(out, "{s:?}"),
            Token::Array(v) | Token::FixedArray(v) => write!(out, "[{}]", format_tokens(v)),
            Token::Tuple(v) => write!(out, "({})", format_tokens(v)),
        }
        .expect("writing to a String");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_artifact_parses() {
        for (name, _) in EMBEDDED {
            let a = artifact(name).unwrap();
            assert!(!a.bytecode.is_empty(), "{name}");
            assert!(a.abi.functions().count() > 0 || name == TARGET, "{name}");
        }
    }

    #[test]
    fn reverts_are_decoded_by_name() {
        let gov = artifact(CB_GOVERNOR_CORE).unwrap();
        let err = gov.abi.errors().find(|e| e.name == "GovernorAlreadyCastVote").unwrap();
        let data = err.encode(&[Token::Address(Default::default())]).unwrap();
        assert!(decode_revert(&data).starts_with("GovernorAlreadyCastVote(0x0000"), "{}", decode_revert(&data));
        let set_value = artifact(TARGET).unwrap().base().encode("setValue", ethers::types::U256::one()).unwrap();
        assert_eq!(function_name(&set_value).as_deref(), Some("setValue(uint256)"));
    }
}
