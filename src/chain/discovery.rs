//! Discovery: from a governor address alone, learn its token, timelock, clock and counting
//! modes and settings, and where on the chain indexing has to start.

use super::{ChainError, RpcClient};
use crate::domain::{Address, ClockMode, GovernorInfo, QuorumCounting};

/// Reads the governor's configuration through its views.
pub async fn discover(rpc: &RpcClient, chain_id: u64, governor: Address) -> Result<GovernorInfo, ChainError> {
    if !rpc.has_code(&governor, rpc.block_number().await?).await? {
        return Err(ChainError::Decode(format!("no contract at governor address {governor}")));
    }
    let name = rpc.view_string(&governor, "name()", None).await?;
    let vote_source = rpc.view_address(&governor, "token()", None).await?;
    // A CultureBridge voting manager adds achievement-NFT bonuses to an ERC20Votes token:
    // index the token's events and the benefit executor's and NFT's as well.
    let (token, benefit_executor, achievement_nft) = match optional(rpc.view_address(&vote_source, "benefitExecutor()", None).await)? {
        Some(executor) if !executor.is_zero() => {
            let token = rpc.view_address(&vote_source, "token()", None).await?;
            let nft = optional(rpc.view_address(&executor, "achievementNFT()", None).await)?.filter(|a| !a.is_zero());
            (token, Some(executor), nft)
        }
        _ => (vote_source, None, None),
    };
    let timelock = match rpc.view_address(&governor, "timelock()", None).await {
        Ok(a) if !a.is_zero() => Some(a),
        Ok(_) => None,
        Err(ChainError::Reverted(_)) | Err(ChainError::Decode(_)) => None,
        Err(e) => return Err(e),
    };
    // Governors from before ERC-6372 have no CLOCK_MODE and count in blocks.
    let clock_mode_raw = match rpc.view_string(&governor, "CLOCK_MODE()", None).await {
        Ok(s) => s,
        Err(ChainError::Reverted(_)) | Err(ChainError::Decode(_)) => "mode=blocknumber&from=default".to_string(),
        Err(e) => return Err(e),
    };
    let clock_mode = ClockMode::parse(&clock_mode_raw).ok_or_else(|| ChainError::Decode(format!("unsupported CLOCK_MODE {clock_mode_raw:?}")))?;
    let counting_mode = rpc.view_string(&governor, "COUNTING_MODE()", None).await?;
    let voting_delay = rpc.view_uint(&governor, "votingDelay()", &[], None).await?.low_u64();
    let voting_period = rpc.view_uint(&governor, "votingPeriod()", &[], None).await?.low_u64();
    let proposal_threshold = rpc.view_uint(&governor, "proposalThreshold()", &[], None).await?;
    // Compound-style timelocks expire queued operations after a grace period.
    let grace_period_secs = match timelock {
        Some(t) => match rpc.view_uint(&t, "GRACE_PERIOD()", &[], None).await {
            Ok(v) => Some(v.low_u64()),
            Err(ChainError::Reverted(_)) | Err(ChainError::Decode(_)) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    Ok(GovernorInfo {
        chain_id,
        governor,
        name,
        vote_source,
        token,
        benefit_executor,
        achievement_nft,
        timelock,
        clock_mode,
        clock_mode_raw,
        quorum_counting: QuorumCounting::parse(&counting_mode),
        counting_mode,
        voting_delay,
        voting_period,
        proposal_threshold,
        grace_period_secs,
    })
}

/// `Ok(None)` for a view the contract does not have (revert or undecodable answer).
fn optional<T>(r: Result<T, ChainError>) -> Result<Option<T>, ChainError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ChainError::Reverted(_)) | Err(ChainError::Decode(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The first block at which every one of `contracts` has code, found by binary search on
/// `eth_getCode` (needs an archive node; falls back to 0 when history is unavailable).
pub async fn deployment_block(rpc: &RpcClient, contracts: &[Address]) -> Result<u64, ChainError> {
    let head = rpc.block_number().await?;
    let mut earliest = head;
    for c in contracts {
        let (mut lo, mut hi) = (0u64, head);
        match rpc.has_code(c, hi).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => return Ok(0),
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match rpc.has_code(c, mid).await {
                Ok(true) => hi = mid,
                Ok(false) => lo = mid + 1,
                Err(_) => return Ok(0),
            }
        }
        earliest = earliest.min(lo);
    }
    Ok(earliest)
}
