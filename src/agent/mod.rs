//! `pathprobe run`: the long-running agent. Loads the inventory, schedules every target, serves
//! `/metrics`, `/healthz`, `/readyz` and the status page, reloads on change or SIGHUP, and drains
//! on SIGTERM/SIGINT.

mod page;
mod reload;
mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, ConfigErrors};
use crate::metrics::{Exporter, ReloadResult, Source, TargetLabels};
use crate::probe::{self, ProbeContext, ProbeResult, Resolver};
use crate::schedule::{self, BoxFuture, Hooks, Scheduler};
use crate::serve::{self, ListenError};
use crate::target::{Inventory, Target};

pub use status::Status;

/// How the agent runs (from the command line).
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub listen: SocketAddr,
    /// `source_node`.
    pub node: String,
    pub schedule: schedule::Settings,
    /// How often the config file (and the files it names) is checked for changes.
    pub reload_poll: Duration,
    /// How long running probes may take to finish at shutdown.
    pub drain_grace: Duration,
    /// Overrides `agent.source_cluster` (one inventory shared by every cluster's overlay).
    pub source_cluster: Option<String>,
    /// Overrides `agent.network` (one inventory shared by the host and pod DaemonSets).
    pub network: Option<crate::target::Network>,
}

impl Options {
    /// Loads the inventory and applies the command line's overrides of the agent's identity.
    fn load(&self) -> Result<config::Loaded, ConfigErrors> {
        let mut loaded = config::load_with_warnings(&self.config)?;
        if let Some(cluster) = &self.source_cluster {
            loaded.inventory.agent.source_cluster = cluster.clone();
        }
        if let Some(network) = self.network {
            loaded.inventory.agent.network = network;
        }
        Ok(loaded)
    }
}

/// Why the agent could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The inventory is invalid (exit 2).
    #[error("{path}: invalid\n{errors}")]
    Config { path: String, errors: ConfigErrors },
    /// The endpoint could not listen.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The resolver configuration could not be read.
    #[error("building the resolver: {0}")]
    Resolver(String),
}

/// State shared by the scheduler's hooks, the HTTP endpoint and the control loop.
struct Shared {
    exporter: RwLock<Arc<Exporter>>,
    ctx: RwLock<Arc<ProbeContext>>,
    status: Status,
    node: String,
    source: RwLock<Source>,
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Shared {
    fn exporter(&self) -> Arc<Exporter> {
        self.exporter.read().expect("not poisoned").clone()
    }
}

/// The scheduler's view of the agent: probe with the engine, record in the exporter and status.
struct AgentHooks(Arc<Shared>);

impl Hooks for AgentHooks {
    type Outcome = ProbeResult;

    fn run(&self, target: Arc<Target>) -> BoxFuture<ProbeResult> {
        let ctx = self.0.ctx.read().expect("not poisoned").clone();
        // The in-flight gauge goes up and down on one exporter, even if a reload swaps it meanwhile.
        let exporter = self.0.exporter();
        Box::pin(async move {
            exporter.probe_started();
            let result = probe::probe(&target, &ctx).await;
            exporter.probe_ended();
            result
        })
    }

    fn started(&self, _: &Target, lag: Duration) {
        self.0.exporter().observe_lag(lag);
    }

    fn finished(&self, target: &Target, outcome: Option<ProbeResult>) {
        if let Some(result) = outcome {
            self.0.exporter().observe(target, &result);
            self.0.status.record(target, result);
        }
    }

    fn skipped(&self, target: &Target) {
        tracing::debug!(target = %target.name, instance = %target.instance, "previous probe still running; tick skipped");
        self.0.exporter().skipped(target);
    }
}

fn source_of(inv: &Inventory, node: &str) -> Source {
    Source {
        node: node.to_string(),
        cluster: inv.agent.source_cluster.clone(),
        network: inv.agent.network.as_str().to_string(),
    }
}

fn context_of(inv: &Inventory) -> Result<ProbeContext, String> {
    let resolver = Resolver::new(&inv.agent.resolver).map_err(|e| e.to_string())?;
    Ok(ProbeContext {
        resolver: Arc::new(resolver),
    })
}

/// Declares every target of `inv` in a fresh exporter.
fn exporter_for(targets: &[Arc<Target>], inv: &Inventory, source: &Source) -> Exporter {
    let e = Exporter::new(source);
    e.reserve(targets.len() + inv.absent.len());
    for t in targets {
        e.add_target(t);
    }
    for a in &inv.absent {
        e.add_absent(a);
    }
    e.set_last_reload_successful(true);
    e
}

/// Runs the agent until SIGTERM or SIGINT, then drains. Start-up errors come back before
/// anything runs.
pub async fn run(opts: Options) -> Result<(), StartError> {
    // Load before binding, so a bad inventory is reported as such even if the port is busy.
    let loaded = load_at_start(&opts)?;
    let listener = serve::bind(opts.listen).await?;
    serve_inventory(listener, opts, loaded).await
}

/// [`run`] on a listener the caller bound (the demo binds first to print its address).
pub async fn run_on(listener: tokio::net::TcpListener, opts: Options) -> Result<(), StartError> {
    let loaded = load_at_start(&opts)?;
    serve_inventory(listener, opts, loaded).await
}

fn load_at_start(opts: &Options) -> Result<config::Loaded, StartError> {
    opts.load().map_err(|errors| StartError::Config {
        path: opts.config.display().to_string(),
        errors,
    })
}

async fn serve_inventory(
    listener: tokio::net::TcpListener,
    opts: Options,
    loaded: config::Loaded,
) -> Result<(), StartError> {
    let path = opts.config.display().to_string();
    for w in &loaded.warnings {
        tracing::warn!(config = %path, "{w}");
    }
    // One copy of each target, shared by the scheduler and the status rows; the inventory
    // kept for the next reload needs only its absent targets and the files it names.
    let mut inventory = loaded.inventory;
    let targets: Vec<Arc<Target>> = std::mem::take(&mut inventory.targets)
        .into_iter()
        .map(Arc::new)
        .collect();
    let local = listener.local_addr().unwrap_or(opts.listen);
    let source = source_of(&inventory, &opts.node);
    let ctx = context_of(&inventory).map_err(StartError::Resolver)?;
    let shared = Arc::new(Shared {
        exporter: RwLock::new(Arc::new(exporter_for(&targets, &inventory, &source))),
        ctx: RwLock::new(Arc::new(ctx)),
        status: Status::default(),
        node: opts.node.clone(),
        source: RwLock::new(source),
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
    });
    shared.status.set_inventory(&targets, &inventory.absent);

    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    let mut hangup = signal(SignalKind::hangup()).expect("installing the SIGHUP handler");

    let stop_serving = tokio_util::sync::CancellationToken::new();
    let server = {
        let routes = Arc::new(Routes(shared.clone()));
        let stop = stop_serving.clone();
        tokio::spawn(serve::serve(listener, routes, async move { stop.cancelled().await }))
    };
    tracing::info!(
        listen = %local, config = %path, targets = targets.len(), absent = inventory.absent.len(),
        node = %opts.node, "pathprobe agent started"
    );

    let mut scheduler = Scheduler::new(Arc::new(AgentHooks(shared.clone())), opts.schedule);
    let mut watch = reload::Watch::new(&opts.config, &inventory);
    let mut current = inventory;
    scheduler.apply(targets);
    trim_heap();
    shared.ready.store(true, Ordering::Release);

    let mut poll = tokio::time::interval(opts.reload_poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = terminate.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: draining"); break; }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the inventory");
                watch.forget();
                reload_if_changed(&shared, &mut scheduler, &mut watch, &mut current, &opts);
            }
            _ = poll.tick() => reload_if_changed(&shared, &mut scheduler, &mut watch, &mut current, &opts),
        }
    }

    shared.draining.store(true, Ordering::Release);
    let drained = scheduler.drain(opts.drain_grace).await;
    if drained {
        tracing::info!("all running probes finished; exiting");
    } else {
        tracing::warn!(grace = ?opts.drain_grace, "probes still running after the drain grace; exiting anyway");
    }
    stop_serving.cancel();
    let _ = server.await;
    Ok(())
}

/// Reloads when the config file or a file it names changed since the last attempt, and keeps
/// retrying while the last attempt failed: a ConfigMap and the Secret it names arrive
/// separately, so the fix for a failed load may be a file the running inventory never named.
/// The same failure is logged and counted once.
fn reload_if_changed(
    shared: &Arc<Shared>,
    scheduler: &mut Scheduler<AgentHooks>,
    watch: &mut reload::Watch,
    current: &mut Inventory,
    opts: &Options,
) {
    if !watch.changed() && watch.last_failure.is_none() {
        return;
    }
    let outcome = opts.load().map_err(|errors| errors.to_string()).and_then(|loaded| {
        for w in &loaded.warnings {
            tracing::warn!(config = %opts.config.display(), "{w}");
        }
        let mut next = loaded.inventory;
        apply(shared, scheduler, current, &mut next)?;
        Ok(next)
    });
    let exporter = shared.exporter();
    match outcome {
        Ok(next) => {
            watch.loaded(&next);
            *current = next;
            trim_heap();
            exporter.reloaded(ReloadResult::Success);
        }
        Err(errors) if watch.last_failure.as_deref() == Some(errors.as_str()) => {}
        Err(errors) => {
            exporter.reloaded(ReloadResult::Failure);
            for e in errors.lines() {
                tracing::error!(config = %opts.config.display(), "{e}");
            }
            tracing::error!("inventory rejected; the running inventory keeps probing");
            watch.last_failure = Some(errors);
        }
    }
}

/// One malloc arena, not one per thread: the agent's threads allocate little and briefly, and
/// each extra glibc arena keeps its own free memory (about 1 MiB of RSS each at 1,000 targets).
/// Call before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Hands the heap freed after a (re)load back to the system. Parsing and checking a large
/// inventory leaves megabytes of free, fragmented heap (10 MiB at 10,000 targets) that glibc
/// would otherwise keep for good.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the kernel; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Switches the agent to `next`: the schedule, the exporter's series and the status rows.
fn apply(
    shared: &Arc<Shared>,
    scheduler: &mut Scheduler<AgentHooks>,
    current: &Inventory,
    next: &mut Inventory,
) -> Result<(), String> {
    let ctx = context_of(next).map_err(|e| format!("building the resolver: {e}"))?;
    let source = source_of(next, &shared.node);
    let same_source = *shared.source.read().expect("not poisoned") == source;
    *shared.ctx.write().expect("not poisoned") = Arc::new(ctx);
    let targets: Vec<Arc<Target>> = std::mem::take(&mut next.targets).into_iter().map(Arc::new).collect();
    shared.status.set_inventory(&targets, &next.absent);
    // The exporter drops results of targets it does not know, so the order below is what keeps
    // series and targets matched: a target is declared before it can be probed, and forgotten
    // only after its running probe was cancelled (a cancelled probe is never recorded).
    let applied = if same_source {
        let exporter = shared.exporter();
        let absent_now: std::collections::HashSet<TargetLabels> =
            next.absent.iter().map(TargetLabels::of_absent).collect();
        for key in current.absent.iter().map(TargetLabels::of_absent) {
            if !absent_now.contains(&key) {
                exporter.forget(&key);
            }
        }
        for t in &targets {
            exporter.add_target(t);
        }
        let applied = scheduler.apply(targets);
        // Forget, then declare absent: a target that became documented-absent under the same
        // identity keeps its `pathprobe_target_expected 0`.
        for key in &applied.removed {
            exporter.forget(key);
        }
        for a in &next.absent {
            exporter.add_absent(a);
        }
        applied
    } else {
        // The source labels are on every series: a new exporter, counters restart. Removed
        // targets are cancelled before it is installed; a probe of a removed target that ends
        // in between is dropped by either exporter, as neither knows it by then.
        let fresh = Arc::new(exporter_for(&targets, next, &source));
        let applied = scheduler.apply(targets);
        let old = shared.exporter();
        fresh.carry_reloads(&old);
        *shared.exporter.write().expect("not poisoned") = fresh;
        *shared.source.write().expect("not poisoned") = source;
        applied
    };
    tracing::info!(
        added = applied.added.len(),
        updated = applied.updated.len(),
        removed = applied.removed.len(),
        absent = next.absent.len(),
        "inventory reloaded"
    );
    Ok(())
}

/// The agent's HTTP endpoint.
struct Routes(Arc<Shared>);

impl serve::Routes for Routes {
    fn respond(&self, path: &str, headers: &http::HeaderMap) -> http::Response<serve::Body> {
        let s = &self.0;
        match path {
            "/metrics" => {
                let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
                let body = s.exporter().exposition_for(accept);
                serve::streamed(200, body.content_type(), body)
            }
            "/healthz" => serve::text(200, "ok\n"),
            "/readyz" => {
                if s.draining.load(Ordering::Acquire) {
                    serve::text(503, "draining\n")
                } else if s.ready.load(Ordering::Acquire) {
                    serve::text(200, "ready\n")
                } else {
                    serve::text(503, "starting\n")
                }
            }
            "/" => {
                let (rows, absent) = s.status.snapshot();
                let source = s.source.read().expect("not poisoned").clone();
                let header = page::Header {
                    node: &source.node,
                    cluster: &source.cluster,
                    network: &source.network,
                    ready: s.ready.load(Ordering::Acquire) && !s.draining.load(Ordering::Acquire),
                };
                serve::with_type(
                    200,
                    "text/html; charset=utf-8",
                    page::render(&header, &rows, &absent, SystemTime::now()),
                )
            }
            _ => serve::text(404, "not found; try /metrics, /healthz, /readyz or /\n"),
        }
    }
}
