//! The governance story the demo plays on a fresh [`CbDeployment`]: thirty voters with varied
//! holdings and delegations (self, to a steward, a chain A → B → C, none), achievement NFTs
//! minted and moved before and after snapshots, and nine proposals that end in every state the
//! governor has (Expired aside: CBGovernorCore's timelock has no grace period): executed through
//! the timelock, queued, succeeded, defeated for quorum, defeated by the majority, canceled,
//! defeated after a late-quorum extension, still voting, still pending; plus a reorg
//! (`evm_snapshot`, a vote and an NFT transfer mined, `evm_revert`, other transactions mined)
//! while an indexer follows the head.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ethers::signers::{LocalWallet, Signer};
use ethers::types::{Address, U256};
use ethers::utils::keccak256;
use serde_json::Value;

use super::deploy::{tokens, CbDeployment, ProposalCall, VoteCast};
use super::DemoError;
use crate::testkit::DevChain;

/// `support` values of GovernorCountingSimple.
pub mod support {
    /// Against.
    pub const AGAINST: u8 = 0;
    /// For.
    pub const FOR: u8 = 1;
    /// Abstain.
    pub const ABSTAIN: u8 = 2;
}
use support::{ABSTAIN, AGAINST, FOR};

/// The governor's `ProposalState` is govflow's [`ProposalStatus`](crate::domain::ProposalStatus).
pub use crate::domain::ProposalStatus as ProposalState;

/// How a voter's tokens are delegated at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delegation {
    SelfDelegate,
    Undelegated,
    To(&'static str),
}

/// (name, whole tokens minted, delegation): the thirty voters.
const VOTERS: [(&str, u64, Delegation); 30] = {
    use Delegation::*;
    [
        ("amara", 1500, SelfDelegate),
        ("bruno", 1200, SelfDelegate),
        ("chen", 900, SelfDelegate),
        ("dalia", 800, SelfDelegate),
        ("emeka", 650, SelfDelegate),
        ("farah", 500, SelfDelegate),
        // A delegation chain: gil -> hana -> ines. Delegation is not transitive: hana votes
        // with gil's tokens, ines with hana's and her own, gil with nothing.
        ("gil", 300, To("hana")),
        ("hana", 250, To("ines")),
        ("ines", 200, SelfDelegate),
        ("jonas", 450, SelfDelegate),
        // Never delegated at first: their tokens carry no votes (their NFT bonus does).
        ("kofi", 400, Undelegated),
        ("lena", 120, Undelegated),
        // Three small holders delegate to a steward.
        ("mika", 100, To("nadia")),
        ("nadia", 150, SelfDelegate),
        ("omar", 80, To("nadia")),
        ("pia", 60, To("nadia")),
        ("quinn", 350, SelfDelegate),
        ("rosa", 300, SelfDelegate),
        ("sami", 280, SelfDelegate),
        ("tara", 250, SelfDelegate),
        ("umar", 220, SelfDelegate),
        ("vera", 200, SelfDelegate),
        ("wen", 180, SelfDelegate),
        ("xavi", 160, SelfDelegate),
        ("yara", 140, SelfDelegate),
        ("zane", 120, SelfDelegate),
        ("abebe", 100, SelfDelegate),
        ("bea", 90, SelfDelegate),
        ("cyrus", 70, SelfDelegate),
        ("dina", 40, SelfDelegate),
    ]
};

/// Achievement NFTs minted before the first proposal: (holder, type).
const INITIAL_ACHIEVEMENTS: [(&str, u8); 9] =
    [("amara", 2), ("chen", 1), ("lena", 1), ("nadia", 3), ("farah", 2), ("farah", 3), ("kofi", 2), ("dina", 1), ("dina", 1)];

/// A voter's wallet: a fixed key derived from its name, so the demo's addresses are the same
/// on every run.
pub fn voter_wallet(name: &str, chain_id: u64) -> Result<LocalWallet, DemoError> {
    LocalWallet::from_bytes(&keccak256(format!("govflow demo voter {name}").as_bytes()))
        .map(|w| w.with_chain_id(chain_id))
        .map_err(|e| DemoError::Story(format!("cannot derive the wallet of {name}: {e}")))
}

/// An account of the story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoryAccount {
    /// Its name in the story.
    pub name: String,
    /// Address.
    pub address: Address,
    /// Tokens minted to it at the start.
    pub minted: U256,
    /// Its delegation at the start, in words.
    pub delegation: String,
}

/// A proposal of the story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoryProposal {
    /// `P1`, `P2`, ...
    pub label: String,
    /// Proposal id.
    pub id: U256,
    /// First line of the description.
    pub title: String,
    /// Proposer's name.
    pub proposer: String,
    /// The state it is left in at the end of the story (checked against `state(id)`).
    pub intended: ProposalState,
    /// What happened to it.
    pub note: String,
    /// `proposalSnapshot`.
    pub snapshot: u64,
    /// `proposalDeadline` at the end (after any extension).
    pub deadline: u64,
    /// The deadline before any late-quorum extension.
    pub original_deadline: u64,
    /// The full proposal (targets, values, calldatas, description).
    pub call: ProposalCall,
}

/// The reorg of the story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReorgReport {
    /// The last block both branches share.
    pub fork_block: u64,
    /// Head of the orphaned branch.
    pub orphaned_head: u64,
    /// Votes mined on the orphaned branch only.
    pub orphaned_votes: Vec<VoteCast>,
    /// NFT transfers mined on the orphaned branch only: (from, to, NFT id).
    pub orphaned_nft_transfers: Vec<(Address, Address, U256)>,
    /// NFT transfers mined instead on the canonical branch.
    pub canonical_nft_transfers: Vec<(Address, Address, U256)>,
    /// Head of the canonical branch once the story moved on from the reorg.
    pub canonical_head: u64,
    /// Whether a follower was waited for on both branches (so it saw the reorg).
    pub followed: bool,
}

/// Everything the story did: what a newcomer is shown and what a test compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoryReport {
    /// The proposals, in creation order.
    pub proposals: Vec<StoryProposal>,
    /// The thirty voters.
    pub accounts: Vec<StoryAccount>,
    /// Every vote on the canonical chain, from its VoteCast event.
    pub votes: Vec<VoteCast>,
    /// The reorg.
    pub reorg: ReorgReport,
    /// First block of the story.
    pub first_block: u64,
    /// The head at the end.
    pub head: u64,
    /// Transactions sent (including the orphaned ones).
    pub transactions: u64,
    /// How long the story took.
    pub elapsed: Duration,
}

impl StoryReport {
    /// The account named `name`.
    pub fn account(&self, name: &str) -> Option<&StoryAccount> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// The proposal labelled `label` (`P1` ...).
    pub fn proposal(&self, label: &str) -> Option<&StoryProposal> {
        self.proposals.iter().find(|p| p.label == label)
    }
}

/// Waits on a govflow API (`/v1/status`) during the story, so that the indexer has seen the
/// orphaned branch before the reorg and the canonical one after it.
#[derive(Debug, Clone)]
pub struct Follower {
    base: String,
    client: reqwest::Client,
    /// How long to wait for the indexer.
    pub timeout: Duration,
}

impl Follower {
    /// Follows the govflow API at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>) -> Follower {
        Follower { base: base.into().trim_end_matches('/').to_owned(), client: reqwest::Client::new(), timeout: Duration::from_secs(120) }
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Value, DemoError> {
        let fail = |e: reqwest::Error| DemoError::Follower(format!("GET {}/v1/status: {e}", self.base));
        let r = self.client.get(format!("{}/v1/status", self.base)).timeout(Duration::from_secs(5)).send().await.map_err(fail)?;
        r.error_for_status().map_err(fail)?.json::<Value>().await.map_err(fail)
    }

    /// Waits until govflow has indexed `block` and handled at least `reorgs` reorgs; returns
    /// the status then.
    pub async fn wait_until(&self, block: u64, reorgs: u64) -> Result<Value, DemoError> {
        let start = Instant::now();
        loop {
            let last = match self.status().await {
                Ok(st) => {
                    let indexed = st["indexedBlock"].as_u64().unwrap_or(0);
                    let handled = st["reorgsHandled"].as_u64().unwrap_or(0);
                    if indexed >= block && handled >= reorgs {
                        return Ok(st);
                    }
                    format!("indexedBlock {indexed}, reorgsHandled {handled}")
                }
                Err(e) => e.to_string(),
            };
            if start.elapsed() > self.timeout {
                return Err(DemoError::Follower(format!(
                    "govflow at {} did not reach block {block} with {reorgs} reorg(s) handled within {:?} (last: {last})",
                    self.base, self.timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How to play.
#[derive(Debug, Clone, Default)]
pub struct PlayOptions {
    /// A govflow API to wait for around the reorg (without one, nobody is guaranteed to have
    /// seen the orphaned branch).
    pub follower: Option<Follower>,
    /// Print the story on stdout as it happens.
    pub narrate: bool,
}

struct Voter {
    name: &'static str,
    wallet: LocalWallet,
}

struct Ctx<'a> {
    dep: &'a CbDeployment,
    chain: &'a DevChain,
    opts: &'a PlayOptions,
    voters: Vec<Voter>,
    votes: Vec<VoteCast>,
    nfts: BTreeMap<&'static str, Vec<(U256, u8)>>,
    proposals: Vec<StoryProposal>,
    txs: u64,
}

impl Ctx<'_> {
    fn say(&self, line: impl AsRef<str>) {
        if self.opts.narrate {
            println!("{}", line.as_ref());
        }
    }

    fn voter(&self, name: &str) -> Result<&LocalWallet, DemoError> {
        self.voters.iter().find(|v| v.name == name).map(|v| &v.wallet).ok_or_else(|| DemoError::Story(format!("no voter named {name}")))
    }

    fn addr(&self, name: &str) -> Result<Address, DemoError> {
        Ok(self.voter(name)?.address())
    }

    async fn head(&self) -> Result<u64, DemoError> {
        Ok(self.chain.block_number().await?)
    }

    async fn propose(&mut self, label: &str, proposer: &str, value: u64, title: &str, body: &str) -> Result<ProposalCall, DemoError> {
        let description = format!("# {title}\n{body}");
        let wallet = self.voter(proposer)?.clone();
        let (call, r) = self.dep.propose_set_value(&wallet, value, &description).await?;
        self.txs += 1;
        let snapshot = self.dep.proposal_snapshot(call.id).await?;
        let deadline = self.dep.proposal_deadline(call.id).await?;
        self.say(format!("  [block {}] {label} \"{title}\" proposed by {proposer}: voting from block {} to {deadline}", r.block_number, snapshot + 1));
        self.proposals.push(StoryProposal {
            label: label.to_owned(),
            id: call.id,
            title: title.to_owned(),
            proposer: proposer.to_owned(),
            intended: ProposalState::Pending,
            note: String::new(),
            snapshot,
            deadline,
            original_deadline: deadline,
            call: call.clone(),
        });
        Ok(call)
    }

    fn intend(&mut self, id: U256, state: ProposalState, note: &str) {
        if let Some(p) = self.proposals.iter_mut().find(|p| p.id == id) {
            p.intended = state;
            p.note = note.to_owned();
        }
    }

    async fn vote(&mut self, name: &str, id: U256, support: u8, reason: &str) -> Result<VoteCast, DemoError> {
        let wallet = self.voter(name)?.clone();
        let v = self.dep.vote(&wallet, id, support, reason).await?;
        self.txs += 1;
        self.votes.push(v.clone());
        Ok(v)
    }

    /// Several votes on one proposal; prints the tally afterwards.
    async fn votes(&mut self, label: &str, id: U256, ballots: &[(&str, u8, &str)]) -> Result<(), DemoError> {
        for (name, support, reason) in ballots {
            self.vote(name, id, *support, reason).await?;
        }
        let (against, for_, abstain) = self.dep.proposal_votes(id).await?;
        self.say(format!("  {label}: {} votes cast, tally for {} / against {} / abstain {}", ballots.len(), whole(for_), whole(against), whole(abstain)));
        Ok(())
    }

    async fn mint_nft(&mut self, to: &'static str, kind: u8) -> Result<U256, DemoError> {
        let (id, _) = self.dep.mint_achievement(self.addr(to)?, kind).await?;
        self.txs += 1;
        self.nfts.entry(to).or_default().push((id, kind));
        Ok(id)
    }

    /// Moves `from`'s first NFT of type `kind` to `to`.
    async fn move_nft(&mut self, from: &'static str, to: &'static str, kind: u8) -> Result<(Address, Address, U256), DemoError> {
        let held = self.nfts.entry(from).or_default();
        let pos = held.iter().position(|(_, k)| *k == kind).ok_or_else(|| DemoError::Story(format!("{from} holds no achievement of type {kind}")))?;
        let (id, _) = held.remove(pos);
        let wallet = self.voter(from)?.clone();
        let to_addr = self.addr(to)?;
        self.dep.transfer_achievement(&wallet, to_addr, id).await?;
        self.txs += 1;
        self.nfts.entry(to).or_default().push((id, kind));
        Ok((wallet.address(), to_addr, id))
    }

    async fn mine_past_snapshot(&self, id: U256) -> Result<u64, DemoError> {
        let snapshot = self.dep.proposal_snapshot(id).await?;
        Ok(self.chain.mine_to(snapshot + 1).await?)
    }

    async fn mine_past_deadline(&self, id: U256) -> Result<u64, DemoError> {
        let deadline = self.dep.proposal_deadline(id).await?;
        Ok(self.chain.mine_to(deadline + 1).await?)
    }

    async fn follow(&self, reorgs: u64) -> Result<Option<Value>, DemoError> {
        match &self.opts.follower {
            Some(f) => {
                let head = self.head().await?;
                f.wait_until(head, reorgs).await.map(Some)
            }
            None => Ok(None),
        }
    }
}

/// `n` in whole tokens, for narration (e.g. `1520` or `12.5`).
pub fn whole(n: U256) -> String {
    let unit = U256::exp10(18);
    let (q, r) = (n / unit, n % unit);
    if r.is_zero() {
        q.to_string()
    } else {
        let frac = format!("{:018}", r.as_u128());
        format!("{q}.{}", frac.trim_end_matches('0'))
    }
}

/// Plays the story on `dep` (freshly deployed with [`super::deploy::deploy`]), using `chain`
/// (an anvil: [`crate::testkit::Anvil`] derefs to it) to mine blocks, move time and reorg.
pub async fn play(dep: &CbDeployment, chain: &DevChain, opts: &PlayOptions) -> Result<StoryReport, DemoError> {
    let started = Instant::now();
    let mut voters = Vec::new();
    for (name, _, _) in VOTERS {
        voters.push(Voter { name, wallet: voter_wallet(name, chain.chain_id())? });
    }
    let mut cx = Ctx { dep, chain, opts, voters, votes: Vec::new(), nfts: BTreeMap::new(), proposals: Vec::new(), txs: 0 };
    let first_block = cx.head().await? + 1;

    // ----- the community ------------------------------------------------------------------
    cx.say(format!("== the community: {} voters get tokens, delegate and earn achievements", VOTERS.len()));
    let mut accounts = Vec::new();
    for (name, amount, delegation) in VOTERS {
        let a = cx.addr(name)?;
        chain.set_balance(a, U256::exp10(20)).await?;
        dep.mint_tokens(a, tokens(amount)).await?;
        cx.txs += 1;
        accounts.push(StoryAccount {
            name: name.to_owned(),
            address: a,
            minted: tokens(amount),
            delegation: match delegation {
                Delegation::SelfDelegate => "self".to_owned(),
                Delegation::Undelegated => "none".to_owned(),
                Delegation::To(to) => format!("to {to}"),
            },
        });
    }
    for (name, _, delegation) in VOTERS {
        let to = match delegation {
            Delegation::SelfDelegate => name,
            Delegation::To(to) => to,
            Delegation::Undelegated => continue,
        };
        let (wallet, to) = (cx.voter(name)?.clone(), cx.addr(to)?);
        dep.delegate(&wallet, to).await?;
        cx.txs += 1;
    }
    for (to, kind) in INITIAL_ACHIEVEMENTS {
        cx.mint_nft(to, kind).await?;
    }
    let supply: U256 = VOTERS.iter().map(|(_, n, _)| tokens(*n)).fold(U256::zero(), |a, b| a + b);
    cx.say(format!(
        "  {} tokens minted; gil -> hana -> ines is a delegation chain; kofi and lena never delegated; \
         mika, omar and pia delegate to nadia; {} achievement NFTs minted (type 1: +5 votes, type 2: +20 votes \
         and 250 bps fee discount, type 3: 500 bps fee discount); quorum is {}% of the supply ({} tokens)",
        whole(supply),
        INITIAL_ACHIEVEMENTS.len(),
        dep.params.quorum_numerator,
        whole(supply * dep.params.quorum_numerator / 100)
    ));

    // ----- P1: executed through the timelock -----------------------------------------------
    cx.say("== P1: a proposal that goes all the way: voted, queued on the timelock, executed");
    let p1 = cx.propose("P1", "amara", 2026, "Fund the autumn culture festival", "Grant 2026 units to the festival. ipfs://bafy-festival-2026").await?;
    // Before the snapshot: counts for P1.
    cx.mint_nft("jonas", 2).await?;
    cx.say("  jonas earns a type-2 achievement before P1's snapshot: +20 votes on P1");
    cx.mine_past_snapshot(p1.id).await?;
    // After the snapshot: P1's weights do not move; later proposals see it.
    cx.move_nft("chen", "dalia", 1).await?;
    let (bruno, tara) = (cx.voter("bruno")?.clone(), cx.addr("tara")?);
    dep.transfer_tokens(&bruno, tara, tokens(200)).await?;
    cx.txs += 1;
    cx.say("  after P1's snapshot: chen gives his type-1 achievement to dalia, bruno sends 200 tokens to tara (P1's weights do not change)");
    cx.votes(
        "P1",
        p1.id,
        &[
            ("amara", FOR, "Culture brings us together"),
            ("bruno", FOR, ""),
            ("chen", AGAINST, "Too expensive this year"),
            ("dalia", FOR, ""),
            ("emeka", ABSTAIN, "I run one of the stalls: conflict of interest"),
            ("farah", FOR, ""),
            ("gil", FOR, "My tokens vote through hana"),
            ("hana", FOR, ""),
            ("ines", FOR, ""),
            ("jonas", FOR, ""),
            ("kofi", AGAINST, ""),
            ("lena", FOR, "Only my achievement counts"),
            ("nadia", FOR, "For mika, omar and pia too"),
            ("quinn", AGAINST, ""),
            ("rosa", FOR, ""),
            ("sami", ABSTAIN, ""),
            ("tara", FOR, ""),
            ("umar", FOR, ""),
            ("vera", AGAINST, ""),
            ("wen", FOR, ""),
        ],
    )
    .await?;
    cx.mine_past_deadline(p1.id).await?;
    dep.queue(&p1).await?;
    cx.txs += 1;
    chain.increase_time(dep.params.timelock_min_delay + 1).await?;
    dep.execute(&p1).await?;
    cx.txs += 1;
    cx.say(format!("  P1 succeeded, was queued, the timelock delay ({} s) passed, and it was executed", dep.params.timelock_min_delay));
    cx.intend(p1.id, ProposalState::Executed, "executed through the timelock");

    // ----- P2..P6 --------------------------------------------------------------------------
    cx.say("== P2-P6: five proposals at once");
    let kofi = cx.voter("kofi")?.clone();
    dep.delegate(&kofi, kofi.address()).await?;
    cx.txs += 1;
    cx.say("  kofi finally delegates to himself: his 400 tokens count from now on");
    let p2 = cx.propose("P2", "bruno", 7, "Commission a mural for the community hall", "A wall-sized mural by local artists.").await?;
    let p3 = cx.propose("P3", "chen", 8, "Translate the oral-history archive", "Into the four languages of the neighbourhood.").await?;
    let p4 = cx.propose("P4", "dina", 9, "Rename the guild to Bridge Builders", "A name that says what we do.").await?;
    let p5 = cx.propose("P5", "sami", 10, "Sell the old community hall", "The upkeep costs more than it brings.").await?;
    let p6 = cx.propose("P6", "quinn", 11, "Buy a boat for river concerts", "Music on the water every summer.").await?;
    let quinn = cx.voter("quinn")?.clone();
    dep.cancel(&quinn, &p6).await?;
    cx.txs += 1;
    cx.say("  quinn withdraws P6 before voting starts");
    cx.intend(p6.id, ProposalState::Canceled, "canceled by its proposer while pending");
    cx.mine_past_snapshot(p5.id).await?;
    cx.votes("P2", p2.id, &[("amara", FOR, ""), ("dalia", FOR, ""), ("farah", FOR, "Art in public space"), ("jonas", FOR, ""), ("chen", AGAINST, "")]).await?;
    cx.votes(
        "P3",
        p3.id,
        &[("chen", FOR, "Memory is culture"), ("ines", FOR, ""), ("nadia", FOR, ""), ("emeka", FOR, ""), ("xavi", FOR, ""), ("yara", AGAINST, "")],
    )
    .await?;
    cx.votes("P4", p4.id, &[("dina", FOR, "A name that says what we do"), ("cyrus", FOR, ""), ("bea", FOR, ""), ("abebe", AGAINST, "")]).await?;
    cx.votes(
        "P5",
        p5.id,
        &[
            ("sami", FOR, "We cannot afford the upkeep"),
            ("tara", FOR, ""),
            ("umar", FOR, ""),
            ("jonas", ABSTAIN, ""),
            ("amara", AGAINST, "The hall is our home"),
            ("bruno", AGAINST, ""),
            ("dalia", AGAINST, ""),
            ("kofi", AGAINST, "My first vote with my own tokens"),
        ],
    )
    .await?;
    for p in [&p2, &p3, &p4, &p5] {
        cx.mine_past_deadline(p.id).await?;
    }
    dep.queue(&p2).await?;
    cx.txs += 1;
    cx.intend(p2.id, ProposalState::Queued, "succeeded and queued on the timelock, not executed yet");
    cx.intend(p3.id, ProposalState::Succeeded, "succeeded, nobody queued it");
    cx.intend(p4.id, ProposalState::Defeated, "defeated: a majority for it, but far from the quorum");
    cx.intend(p5.id, ProposalState::Defeated, "defeated: quorum reached, the majority against");
    cx.say("  P2 succeeded and is queued (not executed); P3 succeeded (not queued); P4 missed the quorum; P5 lost the vote");

    // ----- P7: late quorum -----------------------------------------------------------------
    cx.say("== P7: quorum reached in the very last block of voting: the deadline moves");
    let p7 = cx.propose("P7", "emeka", 12, "Extend the library's opening hours", "Open until 22:00 on weekdays.").await?;
    cx.mine_past_snapshot(p7.id).await?;
    cx.votes("P7", p7.id, &[("wen", FOR, ""), ("xavi", FOR, ""), ("zane", FOR, "")]).await?;
    let original = dep.proposal_deadline(p7.id).await?;
    chain.mine_to(original - 1).await?;
    let late = cx.vote("bruno", p7.id, FOR, "Just in time").await?;
    let extended = dep.proposal_deadline(p7.id).await?;
    if extended <= original {
        return Err(DemoError::Story(format!("P7's deadline did not move after the late quorum ({original} -> {extended})")));
    }
    cx.say(format!("  [block {}] bruno's vote brings the quorum in the last block: the deadline moves from {original} to {extended}", late.block));
    cx.votes("P7", p7.id, &[("chen", AGAINST, "The extension gave us time to object"), ("dalia", AGAINST, ""), ("amara", AGAINST, "")]).await?;
    cx.mine_past_deadline(p7.id).await?;
    cx.intend(p7.id, ProposalState::Defeated, "quorum reached in its last block, deadline extended, then outvoted during the extension");
    if let Some(p) = cx.proposals.iter_mut().find(|p| p.id == p7.id) {
        p.original_deadline = original;
    }
    cx.say("  the opposition used the extension: P7 is defeated");

    // ----- P8: still voting; a reorg -------------------------------------------------------
    cx.say("== P8: voting open at the end; a reorg while govflow follows the head");
    let p8 = cx.propose("P8", "farah", 13, "Open call for artists' residencies", "Six residencies a year in the old mill.").await?;
    cx.mine_past_snapshot(p8.id).await?;
    cx.votes("P8", p8.id, &[("amara", FOR, ""), ("ines", FOR, "Residencies bring new voices"), ("nadia", ABSTAIN, "")]).await?;
    let reorgs_before = match cx.follow(0).await? {
        Some(st) => st["reorgsHandled"].as_u64().unwrap_or(0),
        None => 0,
    };
    let fork_block = cx.head().await?;
    let snap = chain.snapshot().await?;
    let orphan_vote = cx.dep.vote(cx.voter("rosa")?, p8.id, FOR, "Residencies for everyone").await?;
    cx.txs += 1;
    let nfts_before = cx.nfts.clone();
    let orphan_move = cx.move_nft("amara", "bea", 2).await?;
    let orphaned_head = cx.head().await?;
    cx.say(format!("  [blocks {}-{orphaned_head}] rosa votes for P8 and amara gives her type-2 achievement to bea", fork_block + 1));
    let followed = cx.follow(0).await?.is_some();
    if followed {
        cx.say(format!("  govflow has indexed them; now the chain reorganises (evm_revert to block {fork_block})"));
    }
    if !chain.revert(snap).await? {
        return Err(DemoError::Story(format!("evm_revert({snap}) refused")));
    }
    cx.nfts = nfts_before;
    cx.vote("rosa", p8.id, AGAINST, "On second thought: not this year").await?;
    let canonical_move = cx.move_nft("amara", "cyrus", 2).await?;
    chain.mine(3).await?;
    let canonical_head = cx.head().await?;
    cx.say(format!("  [blocks {}-{canonical_head}] instead: rosa votes against P8, amara's achievement goes to cyrus, 3 more blocks", fork_block + 1));
    if let Some(st) = cx.follow(reorgs_before + 1).await? {
        cx.say(format!("  govflow rolled back the orphaned blocks and re-indexed the new branch (reorgs handled: {})", st["reorgsHandled"]));
    }
    cx.votes("P8", p8.id, &[("umar", AGAINST, ""), ("vera", FOR, "")]).await?;
    cx.intend(p8.id, ProposalState::Active, "voting open at the end; rosa's vote changed in a reorg");

    // ----- P9: pending ---------------------------------------------------------------------
    cx.say("== P9: just proposed, voting has not started");
    let p9 = cx.propose("P9", "ines", 14, "Next season's program", "Theatre in spring, music in summer.").await?;
    cx.intend(p9.id, ProposalState::Pending, "proposed at the end: voting has not started");

    // ----- check the chain agrees with the plan --------------------------------------------
    let head = cx.head().await?;
    for p in cx.proposals.iter_mut() {
        p.snapshot = dep.proposal_snapshot(p.id).await?;
        p.deadline = dep.proposal_deadline(p.id).await?;
        let state = dep.state(p.id).await?;
        if ProposalState::from_u8(state) != Some(p.intended) {
            return Err(DemoError::Story(format!("{} \"{}\" is in state {state} on chain, the story meant {}", p.label, p.title, p.intended)));
        }
    }
    Ok(StoryReport {
        proposals: cx.proposals,
        accounts,
        votes: cx.votes,
        reorg: ReorgReport {
            fork_block,
            orphaned_head,
            orphaned_votes: vec![orphan_vote],
            orphaned_nft_transfers: vec![orphan_move],
            canonical_nft_transfers: vec![canonical_move],
            canonical_head,
            followed,
        },
        first_block,
        head,
        transactions: cx.txs,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_tokens_are_printed_exactly() {
        assert_eq!(whole(tokens(1520)), "1520");
        assert_eq!(whole(tokens(12) + U256::exp10(17) * 5), "12.5");
        assert_eq!(whole(U256::zero()), "0");
    }

    #[test]
    fn voters_are_distinct_and_delegations_point_at_voters() {
        let names: std::collections::BTreeSet<_> = VOTERS.iter().map(|v| v.0).collect();
        assert_eq!(names.len(), VOTERS.len());
        for (_, _, d) in VOTERS {
            if let Delegation::To(to) = d {
                assert!(names.contains(to), "{to}");
            }
        }
        for (to, _) in INITIAL_ACHIEVEMENTS {
            assert!(names.contains(to), "{to}");
        }
        let a = voter_wallet("amara", 31337).unwrap().address();
        assert_eq!(a, voter_wallet("amara", 31337).unwrap().address(), "wallets are deterministic");
    }
}
