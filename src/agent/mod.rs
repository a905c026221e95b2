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
use crate::diagnose::Verdict;
use crate::discovery::{self, Refresh};
use crate::mesh::{self, Mesh};
use crate::metrics::{Exporter, ReloadResult, Source};
use crate::probe::{self, ProbeContext, ProbeResult, Resolver};
use crate::schedule::{self, BoxFuture, Hooks, Scheduler};
use crate::serve::{self, ListenError};
use crate::target::{AbsentTarget, Inventory, Target, TargetLabels};

pub use status::Status;

/// How the agent runs (from the command line).
#[derive(Debug, Clone)]
pub struct Options {
    /// The inventory file (`--config`), re-read when it or a file it names changes.
    pub config: PathBuf,
    /// Where `/metrics`, `/healthz`, `/readyz`, `/mesh` and the status page listen (`--listen`).
    pub listen: SocketAddr,
    /// `source_node`.
    pub node: String,
    /// Probes in flight at most and start jitter (`--max-in-flight`, `--jitter`).
    pub schedule: schedule::Settings,
    /// How often the config file (and the files it names) is checked for changes.
    pub reload_poll: Duration,
    /// How long running probes may take to finish at shutdown.
    pub drain_grace: Duration,
    /// Overrides `agent.source_cluster` (one inventory shared by every cluster's overlay).
    pub source_cluster: Option<String>,
    /// Overrides `agent.network` (one inventory shared by the host and pod DaemonSets).
    pub network: Option<crate::target::Network>,
    /// Overrides `mesh.peers` with a DNS name, when the inventory has a mesh.
    pub mesh_dns: Option<String>,
}

impl Options {
    /// Loads the inventory and applies the command line's overrides of the agent's identity.
    fn load(&self) -> Result<config::Loaded, ConfigErrors> {
        let mut loaded = config::load_as(&self.config, self.source_cluster.as_deref())?;
        if let Some(cluster) = &self.source_cluster {
            loaded.inventory.agent.source_cluster = cluster.clone();
        }
        if let Some(network) = self.network {
            loaded.inventory.agent.network = network;
        }
        if let (Some(name), Some(m)) = (&self.mesh_dns, &loaded.inventory.mesh) {
            let Some(name) = mesh::config::dns_name(name) else {
                return Err(config::ConfigError::new(
                    "--mesh-dns",
                    format!("`{name}` is not a DNS name; give the headless Service's name, e.g. pathprobe-pod.pathprobe.svc.cluster.local"),
                )
                .into());
            };
            let mut m = (**m).clone();
            m.peers = mesh::config::PeerSource::Dns(name);
            loaded.inventory.mesh = Some(Arc::new(m));
        }
        Ok(loaded)
    }
}

/// Why the agent could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The inventory is invalid (exit 2).
    #[error("{path}: invalid\n{errors}")]
    Config {
        /// The inventory file.
        path: String,
        /// Everything wrong with it, one per line.
        errors: ConfigErrors,
    },
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
    /// When the latest reload was rejected, and its errors; cleared by a good one.
    rejected: RwLock<Option<(SystemTime, String)>>,
    /// The fleet's verdicts by (job, instance key), from Prometheus when discovery is on.
    verdicts: RwLock<std::collections::HashMap<(String, String), Verdict>>,
    /// The node mesh: peers, their latest results, the names learned.
    mesh: Mesh,
}

impl Shared {
    fn exporter(&self) -> Arc<Exporter> {
        self.exporter.read().expect("not poisoned").clone()
    }

    /// This agent as `/mesh` names it, in its current state.
    fn identity(&self) -> crate::probe::mesh::Identity {
        let source = self.source.read().expect("not poisoned").clone();
        let state = if self.draining.load(Ordering::Acquire) {
            "draining"
        } else if self.ready.load(Ordering::Acquire) {
            "ready"
        } else {
            "starting"
        };
        crate::probe::mesh::Identity {
            node: source.node,
            source_cluster: source.cluster,
            network: source.network,
            state: state.to_string(),
            peers: Default::default(),
        }
    }

    /// Everything the scheduler runs, with their identities: the static targets (as shared),
    /// the discovered ones, then the mesh's probes. One copy of each target and of its
    /// identity, shared by the scheduler, the status rows and the exporter.
    fn scheduled(
        &self,
        statics: &[Arc<Target>],
        discovered: Vec<Target>,
        source_cluster: &str,
    ) -> Vec<(TargetLabels, Arc<Target>)> {
        let keyed = |t: Arc<Target>| (TargetLabels::of(&t), t);
        let mut all = Vec::with_capacity(statics.len() + discovered.len());
        all.extend(statics.iter().cloned().map(keyed));
        all.extend(discovered.into_iter().map(Arc::new).map(keyed));
        all.extend(self.mesh.targets(source_cluster).into_iter().map(Arc::new).map(keyed));
        all
    }
}

/// The running inventory. Its static targets are held once, as the scheduler and the status
/// rows share them, not also as the loaded inventory's own list: at 10,000 targets that list
/// was a second copy of every target (about 5 MiB).
struct Current {
    /// The inventory as loaded, its `targets` moved out into `statics`.
    inv: Inventory,
    /// The inventory's targets, in its order.
    statics: Vec<Arc<Target>>,
}

/// Each target moved into its shared copy. Collected into a new vector on purpose: `collect`
/// on the targets' own would reuse their allocation (in-place iteration), keeping 528 bytes of
/// room for each 8-byte pointer (8.8 MiB at 10,000 targets).
fn shared_copies(targets: Vec<Target>) -> Vec<Arc<Target>> {
    let mut shared = Vec::with_capacity(targets.len());
    shared.extend(targets.into_iter().map(Arc::new));
    shared
}

impl Current {
    /// Splits a loaded inventory into its settings and its targets (moved, not copied).
    fn new(mut inv: Inventory) -> Current {
        let statics = shared_copies(std::mem::take(&mut inv.targets));
        Current { inv, statics }
    }

    /// The whole inventory, its targets copied back for a while: what discovery merges with.
    fn whole(&self) -> Inventory {
        let mut inv = self.inv.clone();
        inv.targets = self.statics.iter().map(|t| Target::clone(t)).collect();
        inv
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
        if let (Some(peer), Some(result)) = (target.peer(), &outcome) {
            if let Some(phase) = result.unplaced {
                self.0.exporter().unplaced(phase);
            }
            self.0.mesh.record(peer, result, &self.0.identity());
            return;
        }
        if let Some(result) = outcome {
            self.0.exporter().observe(target, &result);
            self.0.status.record(target, result);
        }
    }

    fn skipped(&self, target: &Target) {
        if target.peer().is_some() {
            tracing::debug!(peer = %target.instance, "previous mesh probe still running; tick skipped");
            return;
        }
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
        pin: None,
    })
}

/// Declares every target (the inventory's, keyed) and documented-absent one in a fresh exporter.
fn exporter_for(declared: &[(TargetLabels, Arc<Target>)], absent: &[AbsentTarget], source: &Source) -> Exporter {
    let e = Exporter::new(source);
    e.reserve(declared.len() + absent.len());
    for (key, t) in declared {
        e.add_target_as(key, t);
    }
    for a in absent {
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
    // The inventory is kept whole for the next reload: discovery merges under its static targets.
    let inventory = loaded.inventory;
    let local = listener.local_addr().unwrap_or(opts.listen);
    let source = source_of(&inventory, &opts.node);
    let ctx = context_of(&inventory).map_err(StartError::Resolver)?;
    let exporter = Arc::new(Exporter::new(&source));
    let mesh = Mesh::new(local, exporter.peer_series());
    let shared = Arc::new(Shared {
        exporter: RwLock::new(exporter),
        ctx: RwLock::new(Arc::new(ctx)),
        status: Status::default(),
        node: opts.node.clone(),
        source: RwLock::new(source.clone()),
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        rejected: RwLock::new(None),
        verdicts: RwLock::new(Default::default()),
        mesh,
    });
    shared.mesh.set_settings(inventory.mesh.clone());
    let current = Current::new(inventory);
    let inventory = &current.inv;
    let targets = shared.scheduled(&current.statics, Vec::new(), &inventory.agent.source_cluster);
    let declared = &targets[..current.statics.len()];
    let mut fresh = exporter_for(declared, &inventory.absent, &source);
    fresh.carry_reloads(&shared.exporter());
    *shared.exporter.write().expect("not poisoned") = Arc::new(fresh);
    shared.exporter().set_discovery(inventory.discovery.is_some());
    shared.status.set_inventory(declared, &inventory.absent);

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
    let mut watch = reload::Watch::new(&opts.config, &current.inv);
    let mut current = current;
    scheduler.apply_keyed(targets);
    trim_heap();
    let mut disc = Discovered::new();
    disc.restart(&shared, &current.inv);
    let mut meshed = Meshed::new();
    meshed.restart(&shared, &current.inv);
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
                reload_if_changed(&shared, &mut scheduler, &mut watch, &mut current, &opts, &mut disc, &mut meshed);
            }
            _ = poll.tick() => {
                reload_if_changed(&shared, &mut scheduler, &mut watch, &mut current, &opts, &mut disc, &mut meshed);
                shared.status.flush_log();
            }
            Some(refresh) = disc.rx.recv() => disc.refreshed(refresh, &shared, &mut scheduler, &mut current),
            Some(refresh) = meshed.rx.recv() => {
                let discovered = disc.discovered(&current);
                meshed.refreshed(refresh, &shared, &mut scheduler, &current, discovered);
            }
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
    current: &mut Current,
    opts: &Options,
    disc: &mut Discovered,
    meshed: &mut Meshed,
) {
    if !watch.changed() && watch.last_failure.is_none() {
        return;
    }
    let outcome = opts.load().map_err(|errors| errors.to_string()).and_then(|loaded| {
        for w in &loaded.warnings {
            tracing::warn!(config = %opts.config.display(), "{w}");
        }
        let mut next = loaded.inventory;
        let statics = next.targets.len();
        // `next` keeps its settings; its targets (with the discovered ones) move on to `after`.
        let after = if next.discovery.is_some() {
            let merged = disc.merge(&next);
            next.targets = Vec::new();
            merged
        } else {
            let targets = std::mem::take(&mut next.targets);
            Inventory {
                targets,
                ..next.clone()
            }
        };
        let mesh_before = shared.mesh.settings();
        if mesh_before != next.mesh {
            shared.mesh.set_settings(next.mesh.clone());
        }
        match apply(shared, scheduler, &current.inv.absent, after, statics) {
            Ok(statics) => Ok(Current { inv: next, statics }),
            Err(e) => {
                if shared.mesh.settings() != mesh_before {
                    shared.mesh.set_settings(mesh_before);
                }
                Err(e)
            }
        }
    });
    let exporter = shared.exporter();
    match outcome {
        Ok(next) => {
            watch.loaded(&next.inv);
            // A new resolver (agent.resolver) reaches the peer-list task only through a restart.
            if meshed.settings != next.inv.mesh || current.inv.agent.resolver != next.inv.agent.resolver {
                meshed.restart(shared, &next.inv);
            }
            *current = next;
            disc.restart(shared, &current.inv);
            trim_heap();
            exporter.reloaded(ReloadResult::Success);
            *shared.rejected.write().expect("not poisoned") = None;
        }
        Err(errors) if watch.last_failure.as_deref() == Some(errors.as_str()) => {}
        Err(errors) => {
            exporter.reloaded(ReloadResult::Failure);
            for e in errors.lines() {
                tracing::error!(config = %opts.config.display(), "{e}");
            }
            tracing::error!("inventory rejected; the running inventory keeps probing");
            *shared.rejected.write().expect("not poisoned") = Some((SystemTime::now(), errors.clone()));
            watch.last_failure = Some(errors);
        }
    }
}

/// One malloc arena, not one per thread: the agent's threads allocate little and briefly, and
/// each extra glibc arena keeps its own free memory (about 1 MiB of RSS each at 1,000 targets).
/// And a fixed mmap threshold (glibc's initial 128 KiB): by default glibc raises it to the size
/// of the largest mapped block freed (a large inventory's lists while loading, a status page),
/// and its trim threshold to twice that, after which megabytes freed in the heap stay resident
/// (0.6 MiB less anonymous memory at 10,000 targets, benches/results/before-after.md).
/// Call before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
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

/// Switches the agent to `next` (its first `statics` targets are the static ones, the rest
/// discovered): the schedule, the exporter's series and the status rows. `current_absent` is
/// the running inventory's documented-absent list. Hands back the static targets as shared.
fn apply(
    shared: &Arc<Shared>,
    scheduler: &mut Scheduler<AgentHooks>,
    current_absent: &[AbsentTarget],
    mut next: Inventory,
    statics: usize,
) -> Result<Vec<Arc<Target>>, String> {
    let ctx = context_of(&next).map_err(|e| format!("building the resolver: {e}"))?;
    let source = source_of(&next, &shared.node);
    let same_source = *shared.source.read().expect("not poisoned") == source;
    *shared.ctx.write().expect("not poisoned") = Arc::new(ctx);
    let mut listed = std::mem::take(&mut next.targets);
    let inventory_len = listed.len();
    let discovered = listed.split_off(statics.min(inventory_len));
    let statics = shared_copies(listed);
    let targets = shared.scheduled(&statics, discovered, &next.agent.source_cluster);
    let declared = &targets[..inventory_len];
    shared.status.set_inventory(declared, &next.absent);
    // The exporter drops results of targets it does not know, so the order below is what keeps
    // series and targets matched: a target is declared before it can be probed, and forgotten
    // only after its running probe was cancelled (a cancelled probe is never recorded). Mesh
    // probes are recorded by the mesh, never declared here.
    let applied = if same_source {
        let exporter = shared.exporter();
        let absent_now: std::collections::HashSet<TargetLabels> =
            next.absent.iter().map(TargetLabels::of_absent).collect();
        for key in current_absent.iter().map(TargetLabels::of_absent) {
            if !absent_now.contains(&key) {
                exporter.forget(&key);
            }
        }
        for (key, t) in declared {
            exporter.add_target_as(key, t);
        }
        let applied = scheduler.apply_keyed(targets);
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
        // The source labels are on every series: a new exporter, counters restart (but for the
        // agent's own: reloads and discovery refreshes). Removed targets are cancelled before it
        // is installed; a probe of a removed target that ends in between is dropped by either
        // exporter, as neither knows it by then.
        let mut fresh = exporter_for(declared, &next.absent, &source);
        let applied = scheduler.apply_keyed(targets);
        let old = shared.exporter();
        fresh.carry_reloads(&old);
        *shared.exporter.write().expect("not poisoned") = Arc::new(fresh);
        *shared.source.write().expect("not poisoned") = source;
        applied
    };
    shared.exporter().set_discovery(next.discovery.is_some());
    tracing::info!(
        added = applied.added.len(),
        updated = applied.updated.len(),
        removed = applied.removed.len(),
        absent = next.absent.len(),
        "inventory reloaded"
    );
    Ok(statics)
}

/// Discovery as the control loop sees it: the refresh task, the last good discovered targets,
/// and what it already logged.
struct Discovered {
    runner: Option<discovery::Runner>,
    /// From the current task only: a restart makes a new channel, so nothing stale arrives.
    rx: tokio::sync::mpsc::Receiver<Refresh>,
    /// The last good list (kept while Prometheus cannot be asked).
    targets: Vec<Target>,
    /// Identity and URL of `targets`, to skip refreshes that change nothing.
    fingerprint: std::collections::HashSet<(TargetLabels, String)>,
    /// Set by a restart: the next list is applied even if it looks the same (new secrets).
    force: bool,
    /// Discovered targets already reported as covered by a static one.
    reported: std::collections::HashSet<(String, String)>,
    last_failure: Option<String>,
}

impl Discovered {
    fn new() -> Discovered {
        let (_, rx) = tokio::sync::mpsc::channel(1);
        Discovered {
            runner: None,
            rx,
            targets: Vec::new(),
            fingerprint: Default::default(),
            force: false,
            reported: Default::default(),
            last_failure: None,
        }
    }

    /// The inventory to run: `static_inv` plus the discovered targets it does not cover.
    fn merge(&mut self, static_inv: &Inventory) -> Inventory {
        discovery::merge(static_inv, &self.targets, &mut self.reported)
    }

    /// The discovered targets the running inventory does not cover (none, and no copying,
    /// without discovery).
    fn discovered(&mut self, current: &Current) -> Vec<Target> {
        if self.targets.is_empty() {
            return Vec::new();
        }
        let mut merged = self.merge(&current.whole());
        merged
            .targets
            .split_off(current.statics.len().min(merged.targets.len()))
    }

    /// (Re)starts asking Prometheus with the inventory's settings; stops when it has none.
    /// The last discovered targets keep probing until the new task answers.
    fn restart(&mut self, shared: &Arc<Shared>, inv: &Inventory) {
        self.runner = None;
        self.force = true;
        let Some(settings) = inv.discovery.clone() else {
            self.targets.clear();
            self.fingerprint.clear();
            shared.verdicts.write().expect("not poisoned").clear();
            return;
        };
        let ctx = (**shared.ctx.read().expect("not poisoned")).clone();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        self.rx = rx;
        match discovery::Runner::spawn(settings, ctx, tx) {
            Ok(r) => self.runner = Some(r),
            Err(e) => tracing::error!("discovery.prometheus.url: {e}; discovery is off"),
        }
    }

    /// Takes one refresh's outcome.
    fn refreshed(
        &mut self,
        refresh: Refresh,
        shared: &Arc<Shared>,
        scheduler: &mut Scheduler<AgentHooks>,
        current: &mut Current,
    ) {
        if self.runner.is_none() {
            return; // from a task stopped since
        }
        let exporter = shared.exporter();
        let found = match refresh {
            Refresh::Verdicts(verdicts) => {
                let by_key = verdicts
                    .into_iter()
                    .map(|v| ((v.job.clone(), crate::diagnose::instance_key(&v.instance)), v))
                    .collect();
                *shared.verdicts.write().expect("not poisoned") = by_key;
                return;
            }
            Refresh::Failed(error) => {
                exporter.discovery_refreshed(None);
                if self.last_failure.as_deref() != Some(error.as_str()) {
                    tracing::warn!(error = %error, kept = self.targets.len(), "asking Prometheus for its targets failed; the last discovered targets keep probing");
                    self.last_failure = Some(error);
                }
                return;
            }
            Refresh::Targets(found) => found,
        };
        exporter.discovery_refreshed(Some(found.len()));
        if self.last_failure.take().is_some() {
            tracing::info!(targets = found.len(), "Prometheus answers again");
        }
        let fingerprint: std::collections::HashSet<_> = found
            .iter()
            .map(|t| {
                let url = t.http().map(|h| h.url.to_string()).unwrap_or_default();
                (TargetLabels::of(t), url)
            })
            .collect();
        if fingerprint == self.fingerprint && !self.force {
            return;
        }
        self.targets = found;
        self.fingerprint = fingerprint;
        self.force = false;
        let after = self.merge(&current.whole());
        match apply(shared, scheduler, &current.inv.absent, after, current.statics.len()) {
            Ok(statics) => current.statics = statics,
            Err(e) => tracing::error!("applying the discovered targets: {e}"),
        }
    }
}

/// The mesh as the control loop sees it: the peer-list task and what it already logged.
struct Meshed {
    runner: Option<mesh::peers::Runner>,
    /// From the current task only.
    rx: tokio::sync::mpsc::Receiver<mesh::peers::Refresh>,
    /// The settings the task runs with.
    settings: Option<Arc<mesh::MeshSettings>>,
    last_failure: Option<String>,
}

impl Meshed {
    fn new() -> Meshed {
        let (_, rx) = tokio::sync::mpsc::channel(1);
        Meshed {
            runner: None,
            rx,
            settings: None,
            last_failure: None,
        }
    }

    /// (Re)starts reading the peer list with the inventory's settings; stops without a mesh.
    /// The peers already known keep being probed until the new task answers.
    fn restart(&mut self, shared: &Arc<Shared>, inv: &Inventory) {
        self.runner = None;
        self.settings = inv.mesh.clone();
        let Some(settings) = inv.mesh.clone() else { return };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        self.rx = rx;
        let resolver = shared.ctx.read().expect("not poisoned").resolver.clone();
        let port = shared.mesh.default_port(&settings);
        self.runner = Some(mesh::peers::Runner::spawn(settings, port, resolver, tx));
    }

    /// Takes one refresh: a new peer list reschedules the mesh probes; a failure keeps the last.
    fn refreshed(
        &mut self,
        refresh: mesh::peers::Refresh,
        shared: &Arc<Shared>,
        scheduler: &mut Scheduler<AgentHooks>,
        current: &Current,
        discovered: Vec<Target>,
    ) {
        if self.runner.is_none() {
            return;
        }
        match refresh {
            mesh::peers::Refresh::Failed(error) => {
                shared.mesh.refresh_failed();
                if self.last_failure.as_deref() != Some(error.as_str()) {
                    tracing::warn!(error = %error, "reading the mesh peers failed; the last peer list keeps being probed");
                    self.last_failure = Some(error);
                }
            }
            mesh::peers::Refresh::Peers(peers) => {
                if self.last_failure.take().is_some() {
                    tracing::info!(peers = peers.len(), "mesh peers read again");
                }
                if peers.is_empty() {
                    tracing::warn!("the mesh peer list is empty; no peer is probed until agents appear");
                }
                shared.mesh.set_peers(peers);
                let source_cluster = &current.inv.agent.source_cluster;
                scheduler.apply_keyed(shared.scheduled(&current.statics, discovered, source_cluster));
            }
        }
    }
}

/// The agent's HTTP endpoint.
struct Routes(Arc<Shared>);

impl serve::Routes for Routes {
    fn respond_query(&self, path: &str, query: Option<&str>, headers: &http::HeaderMap) -> http::Response<serve::Body> {
        if path != "/mesh" {
            return self.respond(path, headers);
        }
        let bytes = match mesh_bytes(query) {
            Ok(b) => b,
            Err(msg) => return serve::text(400, msg),
        };
        let me = self.0.identity();
        let status = if me.away() { 503 } else { 200 };
        serve::with_type(status, "application/json", self.0.mesh.answer(&me, bytes))
    }

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
                let rejected = s.rejected.read().expect("not poisoned").clone();
                let header = page::Header {
                    rejected: rejected.as_ref().map(|(at, errors)| (*at, errors.as_str())),
                    node: &source.node,
                    cluster: &source.cluster,
                    network: &source.network,
                    ready: s.ready.load(Ordering::Acquire) && !s.draining.load(Ordering::Acquire),
                };
                serve::with_type(
                    200,
                    "text/html; charset=utf-8",
                    page::render(
                        &header,
                        &rows,
                        &absent,
                        &s.verdicts.read().expect("not poisoned"),
                        SystemTime::now(),
                    ),
                )
            }
            "/mesh" => self.respond_query(path, None, headers),
            _ => serve::text(404, "not found; try /metrics, /healthz, /readyz, /mesh or /\n"),
        }
    }
}

/// `?bytes=N` of a `/mesh` request: `None` without it, an error over the cap or unreadable.
fn mesh_bytes(query: Option<&str>) -> Result<Option<usize>, String> {
    let Some(q) = query else { return Ok(None) };
    let Some(value) = q.split('&').find_map(|kv| kv.strip_prefix("bytes=")) else {
        return Ok(None);
    };
    match value.parse::<usize>() {
        Ok(n) if n <= crate::probe::mesh::MAX_PAYLOAD => Ok(Some(n)),
        Ok(n) => Err(format!(
            "bytes={n} is over the cap; ask for at most {} bytes\n",
            crate::probe::mesh::MAX_PAYLOAD
        )),
        Err(_) => Err("bytes must be a whole number of bytes, e.g. /mesh?bytes=8192\n".to_string()),
    }
}
