//! The compiled contracts, from [`govflow::testkit::artifacts`] (embedded at build time from
//! `contracts/artifacts/*.json`, written by `node scripts/compile-contracts.js`); a missing one
//! panics with its name.

use std::collections::BTreeMap;

use govflow::testkit::artifacts as kit;

pub use govflow::testkit::artifacts::{
    decode_revert, format_tokens, function_name, Artifact, CB_ACHIEVEMENT_NFT, CB_BENEFIT_EXECUTOR, CB_GOVERNOR_CORE, CB_TIMELOCK, CB_VOTING_MANAGER,
    COMPOUND_TIMELOCK, GOV_TIMELOCK, GOV_TOKEN, GOV_TOKEN_TIMESTAMP, TARGET, TEST_GOVERNOR, TEST_GOVERNOR_COMPOUND,
};

/// The artifact named `name` (e.g. `"TestGovernor"`). Panics with a hint if it is missing.
pub fn artifact(name: &str) -> &'static Artifact {
    kit::artifact(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Every artifact, by contract name.
pub fn artifacts() -> &'static BTreeMap<String, Artifact> {
    kit::artifacts().unwrap_or_else(|e| panic!("{e}"))
}
