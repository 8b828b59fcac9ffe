//! `govflow demo`: the whole system on one machine, for a newcomer.
//!
//! 1. starts anvil (the npm package installed by `scripts/setup.sh`) on a free loopback port
//!    ([`crate::testkit::anvil`]);
//! 2. deploys the CultureBridge contracts from the artifacts embedded in the binary
//!    ([`deploy`], on [`crate::testkit`]);
//! 3. starts govflow ([`crate::app::run`]) against it, in this process;
//! 4. plays a governance story while govflow follows the head ([`story`]): thirty voters, NFT
//!    bonuses, every proposal state, a late-quorum extension and a reorg;
//! 5. once govflow has caught up, prints the API URL and `curl` commands to try, then serves
//!    until Ctrl-C/SIGTERM (or stops at once with `--exit-after-story`).
//!
//! Anvil is stopped on every way out (end, error, signal); see [`crate::testkit::anvil`] for the
//! guarantees. The building blocks are public so that a test can run the same story against its
//! own govflow process: [`crate::testkit::Anvil::start`], [`deploy::deploy`], [`story::play`].

pub mod deploy;
pub mod story;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ethers::types::Address;

use crate::testkit::anvil::{AnvilOptions, PortChoice};
use crate::testkit::{Anvil, TestkitError};

pub use self::deploy::{deploy, CbDeployment};
pub use self::story::{play, Follower, PlayOptions, ProposalState, StoryReport};

/// What can go wrong while setting up or playing the demo.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DemoError {
    /// The chain, a transaction, a call or an artifact failed.
    #[error(transparent)]
    Kit(#[from] TestkitError),
    /// The govflow API being followed did not answer or catch up.
    #[error("following govflow: {0}")]
    Follower(String),
    /// The story did not go as written.
    #[error("story: {0}")]
    Story(String),
}

/// `govflow demo` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// API listen address HOST:PORT
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Directory of the embedded store [default: a fresh temporary directory, removed at exit]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Stop (govflow and anvil) once the story is played and indexed, instead of serving
    /// until Ctrl-C
    #[arg(long)]
    pub exit_after_story: bool,
}

/// Lower-case 0x hex, as the API spells addresses.
pub fn hex_address(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

/// Runs the demo until Ctrl-C/SIGTERM (or the end of the story with `--exit-after-story`).
/// Must run inside an actix System (govflow's actors live there), like [`crate::app::run`].
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (data_dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            (std::env::temp_dir().join(format!("govflow-demo-{}-{nanos}", std::process::id())), true)
        }
    };
    let _cleanup = RemoveOnDrop(temporary.then(|| data_dir.clone()));
    let app_running = Arc::new(AtomicBool::new(false));
    let inner = demo(args, data_dir, started, app_running.clone());
    tokio::pin!(inner);
    // Signals are watched from the start, so that an interrupt during the set-up also stops
    // anvil (by dropping it) instead of killing this process with it still running.
    tokio::select! {
        r = &mut inner => r,
        _ = shutdown_signal() => {
            if app_running.load(Ordering::Relaxed) {
                // govflow saw the signal too: let it stop gracefully.
                match tokio::time::timeout(Duration::from_secs(10), &mut inner).await {
                    Ok(r) => r,
                    Err(_) => Ok(()),
                }
            } else {
                println!("== interrupted: stopping anvil");
                Ok(())
            }
        }
    }
}

async fn demo(args: DemoArgs, data_dir: PathBuf, started: Instant, app_running: Arc<AtomicBool>) -> anyhow::Result<()> {
    let port = args.listen.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
    if port.is_none() || port == Some(0) {
        anyhow::bail!("--listen {:?}: give HOST:PORT with an explicit port (e.g. 127.0.0.1:8080)", args.listen);
    }
    // Fail before starting anything if the API port is taken.
    drop(std::net::TcpListener::bind(&args.listen).with_context(|| format!("cannot listen on --listen {}", args.listen))?);
    println!("== govflow demo: a local chain, the CultureBridge contracts, a governance story, govflow indexing it");
    let anvil = Anvil::start_with(anvil_options()).await?;
    println!("   anvil {} (chain id {}, pid {})", anvil.rpc_url(), anvil.chain_id(), anvil.pid().map_or_else(|| "?".to_owned(), |p| p.to_string()));
    let t_anvil = started.elapsed();
    let dep = deploy(anvil.rpc_url()).await?;
    println!(
        "   deployed in blocks {}-{}: governor {} (voting manager {}, token {}, timelock {}, achievement NFT {}, benefit executor {})",
        dep.deployment_block,
        dep.setup_block,
        hex_address(dep.governor),
        hex_address(dep.voting_manager),
        hex_address(dep.token),
        hex_address(dep.timelock),
        hex_address(dep.nft),
        hex_address(dep.executor)
    );
    let t_deploy = started.elapsed();

    let overrides: Vec<(&str, String)> = vec![
        ("chain.rpc_url", anvil.rpc_url().to_owned()),
        ("chain.governor", hex_address(dep.governor)),
        ("chain.chain_id", anvil.chain_id().to_string()),
        ("chain.poll_interval_ms", "200".to_owned()),
        ("chain.progress_interval_s", "2".to_owned()),
        ("http.listen", args.listen.clone()),
        ("store.data_dir", data_dir.display().to_string()),
    ];
    let cfg = crate::config::load(None, std::env::vars(), &overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut api = cfg.listen();
    if api.ip().is_unspecified() {
        api.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let base = format!("http://{api}");
    println!("   govflow store in {}", data_dir.display());

    let app = crate::app::run(cfg);
    tokio::pin!(app);
    app_running.store(true, Ordering::Relaxed);
    let story = async {
        let follower = Follower::new(base.clone());
        follower.wait_until(dep.setup_block, 0).await.context("govflow did not start following the chain")?;
        println!("== govflow is following the chain and serving {base}; the story begins");
        let t_story = started.elapsed();
        let report = play(&dep, &anvil, &PlayOptions { follower: Some(follower.clone()), narrate: true }).await.context("playing the story")?;
        let status = follower.wait_until(report.head, 1).await.context("waiting for govflow to index the end of the story")?;
        let t_caught_up = started.elapsed();
        println!(
            "== govflow caught up with the story: block {} indexed, {} reorg(s) handled; {} transactions, {} blocks, {} votes, {} proposals",
            status["indexedBlock"],
            status["reorgsHandled"],
            report.transactions,
            report.head + 1 - report.first_block,
            report.votes.len(),
            report.proposals.len()
        );
        println!(
            "   timings: anvil up {:.1}s, contracts deployed {:.1}s, story started {:.1}s, played {:.1}s, caught up {:.1}s after the demo started",
            t_anvil.as_secs_f64(),
            t_deploy.as_secs_f64(),
            t_story.as_secs_f64(),
            (t_story + report.elapsed).as_secs_f64(),
            t_caught_up.as_secs_f64()
        );
        print_guide(&base, &anvil, &dep, &report);
        Ok::<_, anyhow::Error>(())
    };
    tokio::select! {
        r = &mut app => {
            // govflow stopped before the story ended: a signal (Ok) or a failure.
            r.context("govflow stopped")?;
            println!("== stopped: stopping anvil");
            return Ok(());
        }
        r = story => r?,
    }
    if args.exit_after_story {
        println!("== --exit-after-story: stopping govflow and anvil");
        return Ok(());
    }
    println!("== Ctrl-C to stop govflow and anvil");
    let r = app.await;
    println!("== govflow stopped: stopping anvil");
    r
}

/// The demo's anvil: its port in its command line and cache name (so that a leftover is easy
/// to find), and a graceful stop.
fn anvil_options() -> AnvilOptions {
    AnvilOptions {
        port: PortChoice::Picked,
        cache_prefix: "govflow-demo-anvil".to_owned(),
        stop_grace: Some(Duration::from_secs(3)),
        ..AnvilOptions::default()
    }
}

fn print_guide(base: &str, anvil: &Anvil, dep: &CbDeployment, report: &StoryReport) {
    let id = |label: &str| report.proposal(label).map(|p| p.id.to_string()).unwrap_or_default();
    let who = |name: &str| report.account(name).map(|a| hex_address(a.address)).unwrap_or_default();
    println!();
    println!("   API          {base}");
    println!("   chain        {} (chain id {}; JSON-RPC, e.g. for cast)", anvil.rpc_url(), anvil.chain_id());
    println!("   governor     {}", hex_address(dep.governor));
    println!();
    println!("   the proposals (status as the governor's state() reports it):");
    for p in &report.proposals {
        println!("     {:<3} {:<10} {}: {}", p.label, p.intended.as_str(), p.title, p.note);
        println!("         curl {base}/v1/proposals/{}", p.id);
    }
    println!();
    println!("   try:");
    let lines = [
        (
            format!("curl '{base}/v1/proposals?sort=createdAt&order=asc&fields=proposalId,title,status,forVotes,againstVotes,abstainVotes'"),
            "every proposal, oldest first".to_owned(),
        ),
        (format!("curl '{base}/v1/proposals?status=Defeated,Canceled&fields=proposalId,title,status'"), "filtered by status".to_owned()),
        (format!("curl '{base}/v1/proposals/{}/votes?sort=weight'", id("P1")), "P1's 20 votes, heaviest first, with reasons".to_owned()),
        (
            format!("curl {base}/v1/proposals/{}", id("P7")),
            report
                .proposal("P7")
                .map(|p| format!("late quorum: endBlock {} (originalEndBlock {}) and its history", p.deadline, p.original_deadline))
                .unwrap_or_default(),
        ),
        (format!("curl {base}/v1/proposals/{}/execution-status", id("P1")), "P1 on the timelock".to_owned()),
        (
            format!("curl '{base}/v1/users/{}/voting-power?proposalId={}'", who("jonas"), id("P1")),
            "jonas at P1's snapshot: 450 tokens + 20 from an NFT minted before it".to_owned(),
        ),
        (
            format!("curl '{base}/v1/users/{}/voting-power?proposalId={}'", who("hana"), id("P1")),
            "hana: votes with gil's 300 tokens (chain gil -> hana -> ines)".to_owned(),
        ),
        (format!("curl '{base}/v1/users/{}/voting-power?proposalId={}'", who("lena"), id("P1")), "lena: never delegated; her type-1 NFT alone (5)".to_owned()),
        (format!("curl {base}/v1/users/{}/voting-power", who("cyrus")), "cyrus now: received amara's NFT on the branch that survived the reorg".to_owned()),
        (format!("curl {base}/v1/users/{}/voting-power", who("bea")), "bea now: the NFT she got on the orphaned branch is gone".to_owned()),
        (format!("curl {base}/v1/users/{}/governance-benefits", who("farah")), "farah: types 2 and 3, best of each benefit".to_owned()),
        (format!("curl {base}/v1/users/{}/votes", who("rosa")), "rosa: her P8 vote is the one from after the reorg".to_owned()),
        (format!("curl {base}/v1/delegates"), "delegates ranked by counted weight, with delegator counts".to_owned()),
        (
            format!("curl {base}/v1/users/{}/governance-achievements", who("jonas")),
            "jonas: first vote, participation streaks, with the events that earned them".to_owned(),
        ),
        (format!("curl '{base}/v1/events/governance?after=0&limit=20'"), "governance events for the achievement system, once final".to_owned()),
        (format!("curl {base}/v1/proposals/stats"), "counts per status, pass and execution rates".to_owned()),
        (format!("curl {base}/v1/status"), "discovered contracts, head, indexed block, reorgs handled".to_owned()),
        (format!("curl {base}/metrics"), "Prometheus metrics".to_owned()),
    ];
    for (cmd, what) in lines {
        println!("     {cmd}");
        println!("         # {what}");
    }
    println!();
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Removes a temporary directory when dropped.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}
