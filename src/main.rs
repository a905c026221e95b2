//! The `pathprobe` command line: the edge where errors become exit codes.

// An error becomes an exit code and a message here, never a panic.
#![warn(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use pathprobe::adhoc::{self, AdhocOptions};
#[cfg(feature = "demo")]
use pathprobe::demo;
use pathprobe::probe::{self, ProbeContext, Resolver};
use pathprobe::target::{AbsentTarget, Network, ResolverSettings, Target};
use pathprobe::{agent, config, report};

/// Exit code for usage and config errors (the contract's 2).
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "pathprobe",
    version,
    about = "Per-node synthetic probes that say why a target is unreachable"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The agent: probe every target of the inventory on its interval, forever; serve /metrics,
    /// /healthz, /readyz and a status page at /.
    Run(Box<RunArgs>),
    /// Probe each TARGET once, now, from here, and say what broke.
    Check(Box<CheckArgs>),
    /// Load and validate an inventory; print every error with its field path.
    Validate {
        /// The inventory YAML file.
        file: PathBuf,
    },
    /// Why is a target down? One verdict per target from Prometheus's `up` and scrape errors and
    /// every agent's probes (exit 0 all healthy, 1 any other verdict, 2 Prometheus not asked).
    Diagnose(Box<DiagnoseArgs>),
    // Only with the `demo` feature (on by default): an agent built without it has no `demo`.
    /// The zero-setup tour: loopback targets, one per failure class, probed and exported.
    #[cfg(feature = "demo")]
    Demo {
        /// Print one round and exit.
        #[arg(long)]
        once: bool,
        /// Where to serve /metrics while the demo runs (ip:port, :port or localhost:port).
        #[arg(long, default_value = "127.0.0.1:9807", value_parser = parse_listen)]
        listen: SocketAddr,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The inventory YAML file (watched: changes apply within a couple of seconds; SIGHUP too).
    #[arg(long)]
    config: PathBuf,
    /// Where to serve /metrics, /healthz, /readyz and the status page: ip:port, :port (every
    /// address) or localhost:port.
    #[arg(long, default_value = "0.0.0.0:9807", value_parser = parse_listen)]
    listen: SocketAddr,
    /// Log format: `human`, or `json` (one object per line, for Loki).
    #[arg(long, default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
    /// Probes in flight at most, over all targets (1 or more).
    #[arg(long, default_value_t = 128, value_parser = parse_max_in_flight)]
    max_in_flight: usize,
    /// Random start offset per target, as a fraction of its interval (0 to 1).
    #[arg(long, default_value_t = 0.05, value_parser = parse_fraction)]
    jitter: f64,
    /// How often the inventory and the files it names are checked for changes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    reload_poll: Duration,
    /// How long running probes may take to finish after SIGTERM/SIGINT.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain_grace: Duration,
    /// Overrides the inventory's agent.source_cluster (the `source_cluster` label).
    #[arg(long, env = "PATHPROBE_SOURCE_CLUSTER")]
    source_cluster: Option<String>,
    /// Overrides the inventory's agent.network (the `network` label): host or pod.
    #[arg(long, env = "PATHPROBE_NETWORK", value_parser = ["host", "pod"])]
    network: Option<String>,
    /// Overrides the inventory's mesh.peers with this headless Service name (each DaemonSet
    /// meshes with its own kind: one inventory, two Services).
    #[arg(long, env = "PATHPROBE_MESH_DNS")]
    mesh_dns: Option<String>,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Inventory to look target names up in.
    #[arg(long)]
    config: Option<PathBuf>,
    /// One JSON object per target, one per line.
    #[arg(long)]
    json: bool,
    /// Probe timeout (Prometheus-style duration: 500ms, 5s, 1m); default 5s for ad-hoc targets,
    /// the inventory's for named ones. Like every flag below, it overrides a named target's setting.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Skip TLS certificate verification (the certificate is still recorded).
    #[arg(long)]
    insecure: bool,
    /// PEM file of the CA to trust instead of the system roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// TLS server name (SNI and certificate check) instead of the URL's host.
    #[arg(long)]
    server_name: Option<String>,
    /// Basic auth user name (the password comes from --basic-auth-password-file).
    #[arg(long, requires = "basic_auth_password_file")]
    basic_auth_user: Option<String>,
    /// File holding the basic auth password.
    #[arg(long, requires = "basic_auth_user")]
    basic_auth_password_file: Option<PathBuf>,
    /// File holding a bearer token.
    #[arg(long)]
    bearer_token_file: Option<PathBuf>,
    /// Allowed status codes, e.g. `200`, `200-299`, `200,301-302`.
    #[arg(long)]
    expect_status: Option<String>,
    /// Nameserver (ip:port) to resolve names with instead of the system's.
    #[arg(long)]
    resolver: Option<SocketAddr>,
    /// Targets: names from --config, or tcp://, tls://, http(s)://, scrape+http(s)://, dns:// URLs.
    #[arg(required = true)]
    targets: Vec<String>,
}

#[derive(clap::Args)]
struct DiagnoseArgs {
    /// Prometheus's URL, e.g. http://prometheus-operated.monitoring.svc:9090.
    #[arg(long, env = "PATHPROBE_PROMETHEUS")]
    prometheus: String,
    /// One JSON object per target, one per line.
    #[arg(long)]
    json: bool,
    /// How long each question to Prometheus may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// `JOB` or `JOB/INSTANCE`; none: every target that is down, failing on some node, or
    /// documented absent.
    selectors: Vec<String>,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a fraction from 0 to 1, e.g. 0.05")),
    }
}

/// A listen address as operators write it: `0.0.0.0:9807`, `[::]:9807`, `:9807` (every
/// address, as Go programs take it) or `localhost:9807`.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let example = "write ip:port, e.g. 0.0.0.0:9807 (every address), :9807 (the same) or 127.0.0.1:9807";
    let bad = || format!("`{s}` is not a listen address; {example}");
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(format!(
        "`{s}`: the host must be an IP address (or localhost), not a name; {example}"
    ))
}

fn parse_max_in_flight(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("0 would never probe anything; give 1 or more, e.g. 128".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number; give 1 or more, e.g. 128")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    config::parse_duration(s).map_err(|e| e.to_string())
}

/// Logs to stderr; `RUST_LOG` overrides the default level: a level (`debug`) and/or
/// `target=level` directives, comma-separated (`warn,pathprobe=debug`). A per-target filter
/// rather than tracing-subscriber's `EnvFilter`, whose span and field matching brings a regex
/// DFA compiler into the binary: code pages are most of the agent's RSS (benches/RESULTS.md).
fn init_logging(default_level: LevelFilter, json: bool) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let logs = tracing_subscriber::registry().with(filter);
    if json {
        logs.with(layer.json().flatten_event(true).with_target(false)).init();
    } else {
        logs.with(layer).init();
    }
}

fn main() -> ExitCode {
    pathprobe::agent::tune_allocator();
    let cli = Cli::parse();
    match &cli.command {
        Command::Run(args) => init_logging(LevelFilter::INFO, args.log_format == "json"),
        _ => init_logging(LevelFilter::WARN, false),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Run(args) => runtime.block_on(run(*args)),
        Command::Validate { file } => validate(&file),
        Command::Check(args) => runtime.block_on(check(args)),
        Command::Diagnose(args) => runtime.block_on(diagnose(*args)),
        #[cfg(feature = "demo")]
        Command::Demo { once, listen } => match runtime.block_on(demo::run(once, listen, node_name())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn run(args: RunArgs) -> ExitCode {
    let opts = agent::Options {
        config: args.config,
        listen: args.listen,
        node: node_name(),
        schedule: pathprobe::schedule::Settings {
            max_in_flight: args.max_in_flight,
            jitter: args.jitter,
        },
        reload_poll: args.reload_poll,
        drain_grace: args.drain_grace,
        source_cluster: args.source_cluster.filter(|s| !s.is_empty()),
        network: args
            .network
            .map(|n| if n == "pod" { Network::Pod } else { Network::Host }),
        mesh_dns: args.mesh_dns.filter(|s| !s.is_empty()),
    };
    let json = args.log_format == "json";
    match agent::run(opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(agent::StartError::Config { path, errors }) if json => {
            // One log line per error, so Loki shows each with its field path.
            for e in errors.iter() {
                tracing::error!(config = %path, "{e}");
            }
            tracing::error!(config = %path, errors = errors.len(), "the inventory is invalid; not starting");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e @ agent::StartError::Config { .. }) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) if json => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `source_node`: the Kubernetes downward API's `NODE_NAME`, else the host name.
fn node_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Loads an inventory, printing its warnings; on errors prints them all and gives the exit code.
/// `PATHPROBE_SOURCE_CLUSTER` stands in for a missing `agent.source_cluster`, as for the agent.
fn load(path: &std::path::Path) -> Result<pathprobe::target::Inventory, ExitCode> {
    let cluster = std::env::var("PATHPROBE_SOURCE_CLUSTER").ok().filter(|s| !s.is_empty());
    match config::load_as(path, cluster.as_deref()) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            Ok(loaded.inventory)
        }
        Err(errors) => {
            eprintln!("{}: invalid\n{errors}", path.display());
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

fn validate(file: &std::path::Path) -> ExitCode {
    match load(file) {
        Ok(inv) => {
            println!(
                "{}: valid — {} targets to probe, {} documented absent",
                file.display(),
                inv.targets.len(),
                inv.absent.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

async fn check(args: Box<CheckArgs>) -> ExitCode {
    let opts = AdhocOptions {
        timeout: args.timeout.unwrap_or(Duration::from_secs(5)),
        insecure: args.insecure,
        ca_file: args.ca_file.clone(),
        server_name: args.server_name.clone(),
        basic_auth_user: args.basic_auth_user.clone(),
        basic_auth_password_file: args.basic_auth_password_file.clone(),
        bearer_token_file: args.bearer_token_file.clone(),
        expect_status: args.expect_status.clone(),
    };
    let names: Vec<String> = args.targets.iter().filter(|a| !a.contains("://")).cloned().collect();
    // Per named target: the flags that override its settings, and those that do not apply to it.
    let mut overridden: Vec<(String, Vec<&'static str>, Vec<&'static str>)> = Vec::new();
    let mut all_names: Vec<String> = Vec::new();
    let inventory = match &args.config {
        Some(path) => {
            let cluster = std::env::var("PATHPROBE_SOURCE_CLUSTER").ok().filter(|s| !s.is_empty());
            let loaded = config::load_for_check(path, cluster.as_deref(), &names, |raw| {
                if raw.expected == Some(false) {
                    return;
                }
                let (applied, ignored) = adhoc::override_raw(raw, &opts, args.timeout.is_some());
                let name = raw.name.as_deref().unwrap_or_default().trim().to_string();
                overridden.push((name, applied, ignored));
            });
            match loaded {
                Ok(for_check) => {
                    for w in &for_check.loaded.warnings {
                        eprintln!("warning: {w}");
                    }
                    if !for_check.elsewhere.is_empty() {
                        eprintln!(
                            "warning: {} has {} error(s) in targets not asked for; checking the named ones anyway:",
                            path.display(),
                            for_check.elsewhere.len()
                        );
                        for e in &for_check.elsewhere {
                            eprintln!("warning:   {e}");
                        }
                    }
                    all_names = for_check.names;
                    Some(for_check.loaded.inventory)
                }
                Err(errors) => {
                    eprintln!("{}: invalid\n{errors}", path.display());
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
        None => None,
    };
    overridden.dedup_by(|a, b| a.0 == b.0);
    for (name, applied, ignored) in &overridden {
        if !applied.is_empty() {
            eprintln!(
                "note: {name}: {} override(s) the inventory's settings",
                applied.join(", ")
            );
        }
        if !ignored.is_empty() {
            eprintln!(
                "note: {name}: {} do(es) not apply to this target's kind; ignored",
                ignored.join(", ")
            );
        }
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut absent: Vec<AbsentTarget> = Vec::new();
    for arg in &args.targets {
        let named: Vec<Target> = inventory
            .iter()
            .flat_map(|inv| inv.targets.iter().filter(|t| &t.name == arg).cloned())
            .collect();
        if !named.is_empty() {
            targets.extend(named);
            continue;
        }
        let named_absent: Vec<AbsentTarget> = inventory
            .iter()
            .flat_map(|inv| inv.absent.iter().filter(|a| &a.name == arg).cloned())
            .collect();
        if !named_absent.is_empty() {
            absent.extend(named_absent);
            continue;
        }
        if !arg.contains("://") {
            let hint = config::did_you_mean(arg, all_names.iter().map(String::as_str))
                .map(|n| format!("did you mean `{n}`? "))
                .unwrap_or_default();
            eprintln!(
                "error: {arg:?} is neither a target name in {} nor a URL; {hint}(ad-hoc targets: tcp://host:port, tls://host:port, http(s)://…, scrape+http(s)://…, dns://name)",
                args.config.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the config (none given; use --config)".into())
            );
            return ExitCode::from(EXIT_USAGE);
        }
        match adhoc::parse(arg, &opts) {
            Ok(ts) => targets.extend(ts),
            Err(errors) => {
                eprintln!("error: {errors}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let resolver_settings = match (args.resolver, &inventory) {
        (Some(ns), _) => ResolverSettings { nameservers: vec![ns] },
        (None, Some(inv)) => inv.agent.resolver.clone(),
        (None, None) => ResolverSettings::default(),
    };
    let resolver = match Resolver::new(&resolver_settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: building the resolver: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let ctx = ProbeContext {
        resolver: Arc::new(resolver),
        pin: None,
    };
    let results = futures_util::future::join_all(targets.iter().map(|t| probe::probe(t, &ctx))).await;
    if args.json {
        for (t, r) in targets.iter().zip(&results) {
            println!("{}", report::json(t, r));
        }
        for a in &absent {
            println!("{}", report::absent_json(a));
        }
    } else {
        let rows: Vec<_> = targets.iter().zip(&results).collect();
        if !rows.is_empty() {
            print!("{}", report::table(&rows, report::Hints::Flags));
        }
        for a in &absent {
            println!("{}", report::absent_line(a));
        }
    }
    if results.iter().all(|r| r.success()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn diagnose(args: DiagnoseArgs) -> ExitCode {
    use pathprobe::diagnose::{self, render, DiagnoseError, Selector};
    let mut selectors = Vec::new();
    for s in &args.selectors {
        match Selector::parse(s) {
            Ok(sel) => selectors.push(sel),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let resolver = match Resolver::new(&ResolverSettings::default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: building the resolver: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let ctx = ProbeContext::new(resolver);
    let prom = match pathprobe::promapi::Prometheus::new(&args.prometheus, args.timeout, ctx) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: --prometheus: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let print = |verdicts: &[diagnose::Verdict]| {
        let now = std::time::SystemTime::now();
        for (i, v) in verdicts.iter().enumerate() {
            if args.json {
                println!("{}", render::json(v));
            } else {
                if i > 0 {
                    println!();
                }
                print!("{}", render::human(v, now));
            }
        }
    };
    match diagnose::diagnose(&prom, &selectors).await {
        Ok(report) => {
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            print(&report.verdicts);
            if report.verdicts.is_empty() && !args.json {
                println!("nothing to diagnose: every target Prometheus scrapes is up, no agent sees a failure, none is documented absent");
            }
            if report.verdicts.iter().all(|v| v.verdict == diagnose::Kind::Healthy) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(DiagnoseError::Unknown {
            found,
            unknown,
            known_jobs,
        }) => {
            print(&found);
            eprintln!(
                "error: {}",
                DiagnoseError::Unknown {
                    found: Vec::new(),
                    unknown,
                    known_jobs
                }
            );
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
