//! Compiled contract artifacts (`contracts/artifacts/<Name>.json`, written by
//! `node scripts/compile-contracts.js`), loaded once per test binary, plus helpers that
//! turn selectors and revert data back into readable names using every artifact's ABI.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use ethers::abi::{Abi, Token};
use ethers::contract::BaseContract;
use ethers::types::{Bytes, U256};

/// Names of the artifacts the harness relies on.
pub const GOV_TOKEN: &str = "GovToken";
pub const GOV_TOKEN_TIMESTAMP: &str = "GovTokenTimestamp";
pub const GOV_TIMELOCK: &str = "GovTimelock";
pub const TEST_GOVERNOR: &str = "TestGovernor";
pub const TARGET: &str = "Target";

/// One `contracts/artifacts/<Name>.json`.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub contract_name: String,
    pub abi: Abi,
    pub bytecode: Bytes,
    pub deployed_bytecode: Bytes,
    pub source_hash: String,
}

impl Artifact {
    /// The ABI wrapped for encoding calls and decoding outputs/events.
    pub fn base(&self) -> BaseContract {
        BaseContract::from(self.abi.clone())
    }
}

/// `$CARGO_MANIFEST_DIR/contracts/artifacts`.
pub fn artifacts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts").join("artifacts")
}

fn all() -> &'static BTreeMap<String, Artifact> {
    static ALL: OnceLock<BTreeMap<String, Artifact>> = OnceLock::new();
    ALL.get_or_init(|| {
        let dir = artifacts_dir();
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot read contract artifacts in {}: {e}; run `node scripts/compile-contracts.js` \
                 (after scripts/setup.sh)",
                dir.display()
            )
        });
        let mut map = BTreeMap::new();
        for entry in entries {
            let path = entry.expect("read_dir entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let artifact = parse(&text).unwrap_or_else(|e| panic!("malformed artifact {}: {e}", path.display()));
            map.insert(artifact.contract_name.clone(), artifact);
        }
        map
    })
}

fn parse(text: &str) -> Result<Artifact, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let field = |name: &str| v.get(name).and_then(|x| x.as_str()).map(str::to_owned).ok_or_else(|| format!("missing string field {name:?}"));
    let hex_field = |name: &str| -> Result<Bytes, String> {
        let s = field(name)?;
        let raw = hex::decode(s.trim_start_matches("0x")).map_err(|e| format!("{name}: {e}"))?;
        Ok(Bytes::from(raw))
    };
    let abi: Abi = serde_json::from_value(v.get("abi").cloned().ok_or("missing field \"abi\"")?).map_err(|e| format!("abi: {e}"))?;
    Ok(Artifact {
        contract_name: field("contractName")?,
        abi,
        bytecode: hex_field("bytecode")?,
        deployed_bytecode: hex_field("deployedBytecode")?,
        source_hash: field("sourceHash")?,
    })
}

/// The artifact named `name` (e.g. `"TestGovernor"`). Panics with a hint if it is missing.
pub fn artifact(name: &str) -> &'static Artifact {
    all().get(name).unwrap_or_else(|| {
        panic!("no artifact {name:?} in {} (have: {:?}); run `node scripts/compile-contracts.js`", artifacts_dir().display(), all().keys().collect::<Vec<_>>())
    })
}

/// Every loaded artifact, by contract name.
pub fn artifacts() -> &'static BTreeMap<String, Artifact> {
    all()
}

/// `name(type,...)` of the function whose selector starts `calldata`, searched in all artifacts.
pub fn function_name(calldata: &[u8]) -> Option<String> {
    let selector: [u8; 4] = calldata.get(..4)?.try_into().ok()?;
    all()
        .values()
        .find_map(|a| a.abi.functions().find(|f| f.short_signature() == selector).map(|f| f.signature().split(':').next().unwrap_or_default().to_owned()))
}

/// Human-readable revert reason: `Error(string)`, `Panic(uint256)`, or any custom error
/// declared in one of the artifacts' ABIs (`GovernorUnexpectedProposalState(…)`).
pub fn decode_revert(data: &[u8]) -> String {
    if data.is_empty() {
        return "no revert data".to_owned();
    }
    if data.len() < 4 {
        return format!("malformed revert data 0x{}", hex::encode(data));
    }
    let (selector, body) = data.split_at(4);
    if selector == [0x08, 0xc3, 0x79, 0xa0] {
        if let Ok(tokens) = ethers::abi::decode(&[ethers::abi::ParamType::String], body) {
            return format!("Error({})", format_tokens(&tokens));
        }
    }
    if selector == [0x4e, 0x48, 0x7b, 0x71] {
        if let Ok(tokens) = ethers::abi::decode(&[ethers::abi::ParamType::Uint(256)], body) {
            let code = tokens[0].clone().into_uint().unwrap_or_default();
            return format!("Panic(0x{code:x}: {})", panic_meaning(code));
        }
    }
    for a in all().values() {
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
        format_token(&mut out, t);
    }
    out
}

fn format_token(out: &mut String, t: &Token) {
    match t {
        Token::Address(a) => write!(out, "{a:?}").unwrap(),
        Token::Bytes(b) | Token::FixedBytes(b) => write!(out, "0x{}", hex::encode(b)).unwrap(),
        Token::Uint(u) => write!(out, "{u}").unwrap(),
        Token::Int(i) => write!(out, "{}", ethers::types::I256::from_raw(*i)).unwrap(),
        Token::Bool(b) => write!(out, "{b}").unwrap(),
        Token::String(s) => write!(out, "{s:?}").unwrap(),
        Token::Array(v) | Token::FixedArray(v) => write!(out, "[{}]", format_tokens(v)).unwrap(),
        Token::Tuple(v) => write!(out, "({})", format_tokens(v)).unwrap(),
    }
}
