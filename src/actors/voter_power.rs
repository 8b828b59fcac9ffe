//! `VoterPowerShard`: one actor per shard of the address space keeps every account's balance,
//! delegate and votes, and writes a checkpoint per account and block.
//!
//! Votes come from `DelegateVotesChanged` (exactly what the token's `getVotes` and
//! `getPastVotes` answer), balances from `Transfer`, delegates from `DelegateChanged`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::proposal::BlockPoint;
use crate::domain::{AccountPower, Address, U256};
use crate::store::{Mutation, Store, StoreError};

/// A token event for one account of this shard.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PowerInput {
    /// Balance decreased (sender of a transfer or burn).
    Debit(U256),
    /// Balance increased (receiver of a transfer or mint).
    Credit(U256),
    /// New delegate (`None` for the zero address).
    Delegate(Option<Address>),
    /// Votes are now this value.
    Votes(U256),
    /// Achievement-NFT governance-weight bonus is now this value.
    Bonus(U256),
    /// Special benefits are now (fee discount in basis points, priority boost).
    Benefits(U256, U256),
}

/// Shard index of an address.
pub fn shard_of(a: &Address, shards: usize) -> usize {
    let h = u64::from_be_bytes(a.0[12..20].try_into().unwrap_or([0; 8]));
    (h % shards.max(1) as u64) as usize
}

/// The plain logic: a cache of account states; what the cache misses is read from the store
/// (off the actor's thread) before a batch is applied.
pub struct PowerLedger {
    store: Arc<dyn Store>,
    cache: HashMap<Address, AccountPower>,
    max_cached: usize,
}

impl PowerLedger {
    /// A ledger whose misses are read from `store`.
    pub fn new(store: Arc<dyn Store>, max_cached: usize) -> Self {
        PowerLedger { store, cache: HashMap::new(), max_cached }
    }

    /// The accounts of `inputs` not in the cache, once each.
    pub fn missing(&self, inputs: &[(Address, BlockPoint, PowerInput)]) -> Vec<Address> {
        let mut out: Vec<Address> = inputs.iter().map(|(a, _, _)| *a).filter(|a| !self.cache.contains_key(a)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Reads `accounts` from the store (blocking: call it off the async threads).
    pub fn read(store: &dyn Store, accounts: Vec<Address>) -> Result<HashMap<Address, AccountPower>, StoreError> {
        accounts.into_iter().map(|a| Ok((a, store.account(&a)?.unwrap_or_default()))).collect()
    }

    /// Applies inputs in chain order, starting each account from the cache or from `loaded`
    /// (what [`read`](Self::read) returned for the [`missing`](Self::missing) ones); returns
    /// one checkpoint per account and block.
    pub fn apply(&mut self, inputs: Vec<(Address, BlockPoint, PowerInput)>, mut loaded: HashMap<Address, AccountPower>) -> Vec<Mutation> {
        let mut current: HashMap<Address, AccountPower> = HashMap::new();
        let mut touched: BTreeMap<(u64, Address), AccountPower> = BTreeMap::new();
        for (a, b, input) in inputs {
            let p = current.entry(a).or_insert_with(|| self.cache.get(&a).cloned().or_else(|| loaded.remove(&a)).unwrap_or_default());
            match input {
                PowerInput::Debit(v) => p.balance = p.balance.saturating_sub(v),
                PowerInput::Credit(v) => p.balance = p.balance.saturating_add(v),
                PowerInput::Delegate(d) => p.delegate = d,
                PowerInput::Votes(v) => p.votes = v,
                PowerInput::Bonus(v) => p.nft_bonus = v,
                PowerInput::Benefits(fee, boost) => {
                    p.fee_discount_bps = fee;
                    p.priority_boost = boost;
                }
            }
            p.block_number = b.number;
            p.timestamp = b.timestamp;
            touched.insert((b.number, a), p.clone());
        }
        for (a, p) in current {
            if self.cache.len() >= self.max_cached && !self.cache.contains_key(&a) {
                self.cache.clear();
            }
            self.cache.insert(a, p);
        }
        touched.into_iter().map(|((_, account), power)| Mutation::Account { account, power }).collect()
    }

    /// Forgets cached state (after a failed commit or a rollback).
    pub fn reset(&mut self) {
        self.cache.clear();
    }
}

/// The shard actor.
pub struct VoterPowerShard {
    index: usize,
    ledger: PowerLedger,
}

impl VoterPowerShard {
    /// Shard `index` over `store`.
    pub fn new(index: usize, store: Arc<dyn Store>, max_cached: usize) -> Self {
        VoterPowerShard { index, ledger: PowerLedger::new(store, max_cached) }
    }
}

impl Actor for VoterPowerShard {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16);
        tracing::debug!(target: "voter_power", actor = "voter_power", shard = self.index, "started");
    }
}

/// Apply token events of this shard's accounts.
#[derive(Message)]
#[rtype(result = "Result<Vec<Mutation>, StoreError>")]
pub struct ApplyPower(pub Vec<(Address, BlockPoint, PowerInput)>);

impl Handler<ApplyPower> for VoterPowerShard {
    type Result = AtomicResponse<Self, Result<Vec<Mutation>, StoreError>>;
    fn handle(&mut self, msg: ApplyPower, _ctx: &mut Self::Context) -> Self::Result {
        let _span = tracing::debug_span!("actor", actor = "voter_power", shard = self.index, inputs = msg.0.len()).entered();
        let missing = self.ledger.missing(&msg.0);
        if missing.is_empty() {
            let writes = self.ledger.apply(msg.0, HashMap::new());
            return AtomicResponse::new(Box::pin(fut::ready(Ok(writes))));
        }
        // Cache misses are read off the actor's thread; the shard handles nothing else meanwhile.
        let store = self.ledger.store.clone();
        let read = async move { crate::store::off_thread(&store, move |s| PowerLedger::read(s, missing)).await };
        AtomicResponse::new(Box::pin(read.into_actor(self).map(move |loaded, act, _| Ok(act.ledger.apply(msg.0, loaded?)))))
    }
}

/// Drop cached state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResetPower;

impl Handler<ResetPower> for VoterPowerShard {
    type Result = ();
    fn handle(&mut self, _msg: ResetPower, _ctx: &mut Self::Context) {
        self.ledger.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    #[test]
    fn checkpoints_per_account_and_block() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let mut l = PowerLedger::new(store.clone(), 10);
        let a = Address([1; 20]);
        let b1 = BlockPoint { number: 1, timestamp: 10 };
        let b2 = BlockPoint { number: 2, timestamp: 20 };
        let inputs = vec![
            (a, b1, PowerInput::Credit(U256::from(100))),
            (a, b1, PowerInput::Delegate(Some(a))),
            (a, b1, PowerInput::Votes(U256::from(100))),
            (a, b2, PowerInput::Debit(U256::from(30))),
            (a, b2, PowerInput::Votes(U256::from(70))),
        ];
        let loaded = PowerLedger::read(&*store, l.missing(&inputs)).unwrap();
        let m = l.apply(inputs, loaded);
        assert_eq!(m.len(), 2);
        match &m[1] {
            Mutation::Account { power, .. } => {
                assert_eq!(power.balance, U256::from(70));
                assert_eq!(power.votes, U256::from(70));
                assert_eq!(power.delegate, Some(a));
                assert_eq!(power.block_number, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(shard_of(&a, 4) < 4);
    }
}
