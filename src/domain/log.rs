//! A log as read from the chain, and the hash the chain names things with.

use super::{Address, B256};

/// A log as read from the chain, free of any RPC library's types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawLog {
    /// Emitting contract.
    pub address: Address,
    /// Topics (topic 0 is the event signature hash).
    pub topics: Vec<B256>,
    /// Non-indexed data.
    pub data: Vec<u8>,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Log index within the block.
    pub log_index: u64,
}

/// keccak-256.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    use tiny_keccak::{Hasher, Keccak};
    let mut k = Keccak::v256();
    k.update(data);
    let mut out = [0u8; 32];
    k.finalize(&mut out);
    out
}
