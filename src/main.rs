//! The `govflow` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "govflow", version, about = "Governance process service for OpenZeppelin Governor DAOs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone, Default)]
struct RunArgs {
    /// HTTP JSON-RPC URL of the chain node [config: chain.rpc_url]
    #[arg(long, env = "GOVFLOW_RPC_URL")]
    rpc_url: Option<String>,
    /// Governor contract address [config: chain.governor]
    #[arg(long, env = "GOVFLOW_GOVERNOR")]
    governor: Option<String>,
    /// First block to index [config: chain.start_block]
    #[arg(long, env = "GOVFLOW_START_BLOCK")]
    start_block: Option<String>,
    /// Blocks below the head before data counts as final [config: chain.confirmations]
    #[arg(long, env = "GOVFLOW_CONFIRMATIONS")]
    confirmations: Option<String>,
    /// API listen address HOST:PORT [config: http.listen]
    #[arg(long, env = "GOVFLOW_LISTEN")]
    listen: Option<String>,
    /// Directory of the embedded store [config: store.data_dir]
    #[arg(long, env = "GOVFLOW_DATA_DIR")]
    data_dir: Option<String>,
    /// Store backend: embedded or scylla [config: store.backend]
    #[arg(long, env = "GOVFLOW_STORE")]
    store: Option<String>,
    /// ScyllaDB contact points host:port,... [config: scylla.nodes]
    #[arg(long, env = "GOVFLOW_SCYLLA")]
    scylla_nodes: Option<String>,
    /// ScyllaDB keyspace [config: scylla.keyspace]
    #[arg(long)]
    keyspace: Option<String>,
    /// TOML configuration file (see config/govflow.toml)
    #[arg(long, env = "GOVFLOW_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Index a governor and serve the API.
    Run(RunArgs),
    /// Validate the configuration and print it as TOML (secrets redacted).
    CheckConfig(RunArgs),
    /// Create the ScyllaDB keyspace and apply pending schema migrations (schema/cql/).
    Migrate(RunArgs),
    /// Recompute the ScyllaDB vote counters from the vote records and correct any drift.
    Reconcile(RunArgs),
    /// Start a local chain (anvil), deploy the CultureBridge contracts, play a governance
    /// story and serve it with govflow until Ctrl-C.
    Demo(govflow::demo::DemoArgs),
}

fn load(args: &RunArgs) -> Result<govflow::config::Config, govflow::config::ConfigErrors> {
    load_as(args, true)
}

fn load_as(args: &RunArgs, need_governor: bool) -> Result<govflow::config::Config, govflow::config::ConfigErrors> {
    let mut overrides: Vec<(&str, String)> = Vec::new();
    let pairs = [
        ("chain.rpc_url", &args.rpc_url),
        ("chain.governor", &args.governor),
        ("chain.start_block", &args.start_block),
        ("chain.confirmations", &args.confirmations),
        ("http.listen", &args.listen),
        ("store.data_dir", &args.data_dir),
        ("store.backend", &args.store),
        ("scylla.nodes", &args.scylla_nodes),
        ("scylla.keyspace", &args.keyspace),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            overrides.push((k, v.clone()));
        }
    }
    // The flags' own variables (GOVFLOW_RPC_URL, ...) are read by clap; the generic
    // GOVFLOW_<SECTION>_<KEY> variables are read here.
    if need_governor {
        govflow::config::load(args.config.as_deref(), std::env::vars(), &overrides)
    } else {
        govflow::config::load_store_only(args.config.as_deref(), std::env::vars(), &overrides)
    }
}

/// `govflow migrate` and `govflow reconcile`.
fn store_command(args: &RunArgs, reconcile: bool) -> ExitCode {
    let cfg = match load_as(args, false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("govflow: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    if cfg.store.backend != govflow::config::StoreBackend::Scylla {
        eprintln!(
            "govflow: store.backend is {:?}; `migrate` and `reconcile` apply to the scylla backend (the embedded store needs neither)",
            cfg.store.backend
        );
        return ExitCode::from(2);
    }
    let ks = cfg.scylla.keyspace.clone();
    let result = if reconcile {
        govflow::store::scylla::ScyllaStore::connect(&cfg.scylla, false).and_then(|s| {
            use govflow::store::Store;
            let started = std::time::Instant::now();
            let r = s.reconcile(None)?;
            println!(
                "keyspace {ks}: {} vote records scanned, {} counters checked, {} corrected (total drift {}) in {:.1} s",
                r.votes_scanned,
                r.counters_checked,
                r.counters_corrected,
                r.drift,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        })
    } else {
        govflow::store::scylla::ScyllaStore::migrate(&cfg.scylla).map(|applied| {
            for a in applied {
                println!("keyspace {ks}: migration {:04}_{} {}", a.version, a.name, if a.now { "applied" } else { "already applied" });
            }
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("govflow: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(cfg: &govflow::config::Config) {
    use tracing_subscriber::EnvFilter;
    // The CQL driver's per-connection notices stay out of the way unless asked for, and so do
    // warp's own lines around each request (govflow logs one line per request in its span).
    let mut level = cfg.log.level.clone();
    if !level.contains("scylla") {
        level.push_str(",scylla=warn");
    }
    if !level.contains("warp") {
        level.push_str(",warp::filters::trace=off");
    }
    let filter = EnvFilter::try_from_env("GOVFLOW_LOG").unwrap_or_else(|_| EnvFilter::new(&level));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cfg.log.format == govflow::config::LogFormat::Json {
        b.json().init();
    } else {
        b.init();
    }
}

fn actix_system() -> actix_rt::SystemRunner {
    actix_rt::System::with_tokio_rt(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("cannot start the tokio runtime"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => {
            // `info` unless GOVFLOW_LOG says otherwise.
            init_logging(&govflow::config::Config::default());
            match actix_system().block_on(govflow::demo::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("govflow demo: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig(args) => match load(&args) {
            Ok(mut cfg) => {
                cfg.chain.rpc_url = govflow::config::redact_url(&cfg.chain.rpc_url);
                if cfg.scylla.password.is_some() {
                    cfg.scylla.password = Some("<redacted>".into());
                }
                if cfg.http.admin_token.is_some() {
                    cfg.http.admin_token = Some("<redacted>".into());
                }
                if cfg.http.events_token.is_some() {
                    cfg.http.events_token = Some("<redacted>".into());
                }
                cfg.bus.nats_url = cfg.bus.nats_url.split(',').map(|u| govflow::config::redact_url(u.trim())).collect::<Vec<_>>().join(",");
                cfg.cache.redis_url = cfg.cache.redis_url.as_deref().map(govflow::config::redact_url);
                match toml::to_string_pretty(&cfg) {
                    Ok(text) => {
                        println!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("govflow: the configuration cannot be written as TOML: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("govflow: {e}");
                ExitCode::from(2)
            }
        },
        Command::Migrate(args) => store_command(&args, false),
        Command::Reconcile(args) => store_command(&args, true),
        Command::Run(args) => {
            let cfg = match load(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("govflow: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&cfg);
            match actix_system().block_on(govflow::app::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("govflow: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
