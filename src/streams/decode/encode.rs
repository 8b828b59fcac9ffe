//! ABI encoding of governance logs, for tests and the synthetic benchmark stream: the same
//! bindings ([`super::abi`]) that decode write the data, so the two cannot drift apart.

use alloy_sol_types::SolEvent;

use super::abi::Governor;
use crate::domain::{keccak256, Address, B256, U256};

fn alloy_uint(v: U256) -> alloy_primitives::U256 {
    alloy_primitives::U256::from_limbs(v.0)
}

fn alloy_address(a: &Address) -> alloy_primitives::Address {
    alloy_primitives::Address::from(a.0)
}

/// A uint word.
pub fn uint(v: U256) -> [u8; 32] {
    crate::domain::u256_be(&v)
}

/// An address word / topic.
pub fn address(a: &Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(&a.0);
    w
}

/// The topic 0 for a signature.
pub fn topic(signature: &str) -> B256 {
    B256(keccak256(signature.as_bytes()))
}

/// Data of a `VoteCast` log.
pub fn vote_cast(proposal_id: U256, support: u8, weight: U256, reason: &str) -> Vec<u8> {
    Governor::VoteCast {
        voter: alloy_primitives::Address::ZERO, // indexed: a topic, not data
        proposalId: alloy_uint(proposal_id),
        support,
        weight: alloy_uint(weight),
        reason: reason.into(),
    }
    .encode_data()
}

/// Data of a `ProposalCreated` log with one call (value 0, no signature, an 8-byte calldata).
pub fn proposal_created(proposal_id: U256, proposer: &Address, target: &Address, vote_start: u64, vote_end: u64, description: &str) -> Vec<u8> {
    Governor::ProposalCreated {
        proposalId: alloy_uint(proposal_id),
        proposer: alloy_address(proposer),
        targets: vec![alloy_address(target)],
        values: vec![alloy_primitives::U256::ZERO],
        signatures: vec![String::new()],
        calldatas: vec![vec![0x55, 0x24, 0x10, 0x77, 0, 0, 0, 1].into()],
        voteStart: alloy_primitives::U256::from(vote_start),
        voteEnd: alloy_primitives::U256::from(vote_end),
        description: description.into(),
    }
    .encode_data()
}
