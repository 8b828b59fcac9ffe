//! The compiled contracts the demo deploys, embedded in the binary (`contracts/artifacts/*.json`,
//! written by `node scripts/compile-contracts.js`), and a decoder that turns revert data back
//! into a readable error using their ABIs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use ethers::abi::{Abi, ParamType, Token};
use ethers::contract::BaseContract;
use ethers::types::Bytes;

use super::DemoError;

/// The voting token (ERC20Votes, block-number clock).
pub const GOV_TOKEN: &str = "GovToken";
/// The achievement NFT.
pub const CB_ACHIEVEMENT_NFT: &str = "CBAchievementNFT";
/// The benefit executor (checkpointed NFT bonuses, special benefits).
pub const CB_BENEFIT_EXECUTOR: &str = "CBBenefitExecutor";
/// The voting manager (token votes + NFT bonus), the governor's vote source.
pub const CB_VOTING_MANAGER: &str = "CBVotingManager";
/// The TimelockController.
pub const CB_TIMELOCK: &str = "CBTimelock";
/// The governor.
pub const CB_GOVERNOR_CORE: &str = "CBGovernorCore";
/// The contract proposals call (`setValue`).
pub const TARGET: &str = "Target";

const EMBEDDED: [(&str, &str); 7] = [
    (GOV_TOKEN, include_str!("../../contracts/artifacts/GovToken.json")),
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
    /// Contract name.
    pub name: &'static str,
    /// Its ABI.
    pub abi: Abi,
    /// Creation bytecode.
    pub bytecode: Bytes,
}

impl Artifact {
    /// The ABI wrapped for encoding calls and decoding outputs and events.
    pub fn base(&self) -> BaseContract {
        BaseContract::from(self.abi.clone())
    }
}

fn parse(name: &'static str, text: &str) -> Result<Artifact, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let abi: Abi = serde_json::from_value(v.get("abi").cloned().ok_or("no \"abi\" field")?).map_err(|e| format!("abi: {e}"))?;
    let code = v.get("bytecode").and_then(|b| b.as_str()).ok_or("no \"bytecode\" field")?;
    let bytecode = hex::decode(code.trim_start_matches("0x")).map_err(|e| format!("bytecode: {e}"))?;
    if bytecode.is_empty() {
        return Err("empty bytecode".into());
    }
    Ok(Artifact { name, abi, bytecode: bytecode.into() })
}

fn all() -> &'static Result<BTreeMap<&'static str, Artifact>, DemoError> {
    static ALL: OnceLock<Result<BTreeMap<&'static str, Artifact>, DemoError>> = OnceLock::new();
    ALL.get_or_init(|| {
        EMBEDDED
            .iter()
            .map(|(name, text)| parse(name, text).map(|a| (*name, a)).map_err(|e| DemoError::Artifact { name: (*name).to_owned(), message: e }))
            .collect()
    })
}

/// The embedded artifact `name` (one of the constants of this module).
pub fn artifact(name: &str) -> Result<&'static Artifact, DemoError> {
    match all() {
        Ok(map) => map.get(name).ok_or_else(|| DemoError::Artifact { name: name.to_owned(), message: "not embedded in this binary".into() }),
        Err(e) => Err(e.clone()),
    }
}

/// Human-readable revert reason: `Error(string)`, `Panic(uint256)` or a custom error declared in
/// one of the embedded ABIs (`GovernorUnexpectedProposalState(…)`).
pub fn decode_revert(data: &[u8]) -> String {
    if data.is_empty() {
        return "reverted without data".to_owned();
    }
    if data.len() < 4 {
        return format!("malformed revert data 0x{}", hex::encode(data));
    }
    let (selector, body) = data.split_at(4);
    if selector == [0x08, 0xc3, 0x79, 0xa0] {
        if let Ok(t) = ethers::abi::decode(&[ParamType::String], body) {
            return format!("Error({})", format_tokens(&t));
        }
    }
    if selector == [0x4e, 0x48, 0x7b, 0x71] {
        if let Ok(t) = ethers::abi::decode(&[ParamType::Uint(256)], body) {
            return format!("Panic({})", format_tokens(&t));
        }
    }
    if let Ok(map) = all() {
        for a in map.values() {
            for err in a.abi.errors() {
                if err.signature().as_bytes()[..4] == *selector {
                    if let Ok(t) = err.decode(body) {
                        return format!("{}({})", err.name, format_tokens(&t));
                    }
                }
            }
        }
    }
    format!("unknown revert data 0x{}", hex::encode(data))
}

/// `name(type,…)` of the function whose selector starts `calldata`, searched in every ABI.
pub fn function_name(calldata: &[u8]) -> Option<String> {
    let selector: [u8; 4] = calldata.get(..4)?.try_into().ok()?;
    let map = all().as_ref().ok()?;
    map.values()
        .find_map(|a| a.abi.functions().find(|f| f.short_signature() == selector).map(|f| f.signature().split(':').next().unwrap_or_default().to_owned()))
}

fn format_tokens(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match t {
            Token::Address(a) => write!(out, "{a:?}"),
            Token::Bytes(b) | Token::FixedBytes(b) => write!(out, "0x{}", hex::encode(b)),
            Token::Uint(u) => write!(out, "{u}"),
            Token::String(s) => write!(out, "{s:?}"),
            Token::Bool(b) => write!(out, "{b}"),
            Token::Array(v) | Token::FixedArray(v) | Token::Tuple(v) => write!(out, "[{}]", format_tokens(v)),
            Token::Int(i) => write!(out, "{}", ethers::types::I256::from_raw(*i)),
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
