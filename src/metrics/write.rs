//! The exposition, written straight from the exporter's numbers into a reused buffer, one
//! bounded chunk at a time: memory while serving `/metrics` stays at about a chunk per scrape in
//! progress, whatever the number of targets. The table lock is held for one chunk only, so
//! probes keep being recorded while a slow scraper reads.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};

use super::{openmetrics, Exporter, Series, TEXT_CONTENT_TYPE};
use std::sync::atomic::Ordering;

use crate::probe::{Family as DnsFamily, FamilyOutcome, Phase};
use crate::reason::Reason;

/// Which text format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4, exactly as the `prometheus` crate writes it.
    Text,
    /// OpenMetrics 1.0: counters' families named without `_total`, `# EOF` at the end.
    OpenMetrics,
}

impl Format {
    /// The content type this format is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => openmetrics::CONTENT_TYPE,
        }
    }

    /// The name a family's `# HELP` and `# TYPE` lines give: OpenMetrics names a counter's
    /// family without the `_total` its samples keep.
    fn family_name(self, f: &Family) -> &'static str {
        match (self, f.kind) {
            (Format::OpenMetrics, Type::Counter) => f.name.strip_suffix("_total").unwrap_or(f.name),
            _ => f.name,
        }
    }

    /// What ends the exposition.
    fn end(self) -> &'static str {
        match self {
            Format::Text => "",
            Format::OpenMetrics => "# EOF\n",
        }
    }
}

/// About how much is written before a chunk is handed out.
const CHUNK: usize = 64 * 1024;

/// `le` values, as the `prometheus` crate writes them (`f64`'s `Display`).
const PROBE_LE: [&str; 14] = [
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30",
];
const LAG_LE: [&str; 9] = ["0.0005", "0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// How a family's series are written.
enum Source {
    /// One or more series per target; written for the targets `has` accepts.
    Target {
        has: fn(&Series) -> bool,
        write: fn(&mut Writer, &Series),
    },
    /// The agent's own series.
    Process(fn(&mut Writer, &Exporter)),
    /// The agent's own series, exported only while the test holds (header included).
    ProcessIf(fn(&Exporter) -> bool, fn(&mut Writer, &Exporter)),
}

struct Family {
    /// The name as the text format has it (counters end in `_total`).
    name: &'static str,
    help: &'static str,
    kind: Type,
    source: Source,
}

/// Every family, sorted by name as the `prometheus` crate's registry gathers them.
const FAMILIES: [Family; 31] = [
    Family {
        name: "pathprobe_address_failure_reason",
        help: "All-address mode: always 1; the reason label is the latest probe's reason for this address (none on success).",
        kind: Type::Gauge,
        source: Source::Target {
            has: |s| !s.addresses().is_empty(),
            write: |w, s| {
                for (address, reason) in s.addresses() {
                    let labels = [&[&**address][..], &["reason=\"", reason.as_str(), "\""], &[]];
                    w.series("pathprobe_address_failure_reason", s.labels(), labels);
                    w.u64(1);
                }
            },
        },
    },
    Family {
        name: "pathprobe_address_success",
        help: "All-address mode: 1 if the latest probe of this address of the target succeeded, else 0.",
        kind: Type::Gauge,
        source: Source::Target {
            has: |s| !s.addresses().is_empty(),
            write: |w, s| {
                for (address, reason) in s.addresses() {
                    w.series("pathprobe_address_success", s.labels(), [&[address], &[], &[]]);
                    w.u64(u64::from(*reason == Reason::None));
                }
            },
        },
    },
    Family {
        name: "pathprobe_build_info",
        help: "Always 1; the build's version and revision.",
        kind: Type::Gauge,
        source: Source::Process(build_info),
    },
    Family {
        name: "pathprobe_config_last_reload_successful",
        help: "1 if the latest inventory (re)load succeeded.",
        kind: Type::Gauge,
        source: Source::Process(|w, e| {
            let ok = e.last_reload_ok.load(std::sync::atomic::Ordering::Relaxed);
            w.process(e, "pathprobe_config_last_reload_successful", &[], u64::from(ok));
        }),
    },
    Family {
        name: "pathprobe_config_reloads_total",
        help: "Inventory reloads, by result.",
        kind: Type::Counter,
        source: Source::Process(|w, e| {
            let counts = super::ReloadResult::ALL.map(|r| e.reloads(r));
            w.by_result(e, "pathprobe_config_reloads_total", counts);
        }),
    },
    Family {
        name: "pathprobe_discovered_targets",
        help: "Targets discovered from Prometheus in the last good list.",
        kind: Type::Gauge,
        source: Source::ProcessIf(discovery_on, |w, e| {
            let n = e.discovery.discovered.load(Ordering::Relaxed);
            w.process(e, "pathprobe_discovered_targets", &[], n);
        }),
    },
    Family {
        name: "pathprobe_discovery_last_refresh_successful",
        help: "1 if the latest ask of Prometheus's active targets succeeded (else the last good list keeps probing).",
        kind: Type::Gauge,
        source: Source::ProcessIf(discovery_on, |w, e| {
            let ok = e.discovery.last_ok.load(Ordering::Relaxed);
            w.process(e, "pathprobe_discovery_last_refresh_successful", &[], u64::from(ok));
        }),
    },
    Family {
        name: "pathprobe_discovery_refreshes_total",
        help: "Asks of Prometheus's active targets, by result.",
        kind: Type::Counter,
        source: Source::ProcessIf(discovery_on, |w, e| {
            let counts = e.discovery.refreshes.each_ref().map(|n| n.load(Ordering::Relaxed));
            w.by_result(e, "pathprobe_discovery_refreshes_total", counts);
        }),
    },
    Family {
        name: "pathprobe_dns_lookups_total",
        help: "Name lookups of probed targets, by address family (ipv4: A, ipv6: AAAA) and what that family's question got.",
        kind: Type::Counter,
        source: Source::Process(|w, e| {
            for (fi, family) in DnsFamily::ALL.iter().enumerate() {
                for (oi, outcome) in FamilyOutcome::ALL.iter().enumerate() {
                    let n = e.dns_lookups[fi][oi].load(Ordering::Relaxed);
                    // `family` sorts before the source labels, `outcome` between them.
                    let labels = [
                        &["family=\"", family.as_str(), "\""][..],
                        &["outcome=\"", outcome.as_str(), "\""],
                        &[],
                    ];
                    w.series("pathprobe_dns_lookups_total", source(e), labels);
                    w.u64(n);
                }
            }
        }),
    },
    Family {
        name: "pathprobe_duration_seconds",
        help: "Duration of each phase of the latest probe (0 for a phase that did not run).",
        kind: Type::Gauge,
        source: Source::Target {
            has: probed_once,
            write: |w, s| {
                let last = s.last.as_ref().expect("probed_once");
                for (phase, secs) in Phase::ALL.iter().zip(last.phases) {
                    w.target("pathprobe_duration_seconds", s, &["phase=\"", phase.as_str(), "\""]);
                    w.f64(secs);
                }
            },
        },
    },
    Family {
        name: "pathprobe_failure_reason",
        help: "Always 1; the reason label is the latest probe's reason (none on success).",
        kind: Type::Gauge,
        source: Source::Target {
            has: probed_once,
            write: |w, s| {
                let reason = s.last.as_ref().expect("probed_once").reason;
                w.target("pathprobe_failure_reason", s, &["reason=\"", reason.as_str(), "\""]);
                w.u64(1);
            },
        },
    },
    Family {
        name: "pathprobe_failures_total",
        help: "Failed probes, by the first phase that broke.",
        kind: Type::Counter,
        source: Source::Target {
            has: |s| !s.failures.is_empty(),
            write: |w, s| {
                for (reason, n) in &s.failures {
                    w.target("pathprobe_failures_total", s, &["reason=\"", reason.as_str(), "\""]);
                    w.u64(*n);
                }
            },
        },
    },
    Family {
        name: "pathprobe_http_status_code",
        help: "HTTP status of the latest probe, 0 if none.",
        kind: Type::Gauge,
        source: Source::Target {
            has: probed_once,
            write: |w, s| {
                w.target("pathprobe_http_status_code", s, &[]);
                w.u64(u64::from(s.last.as_ref().expect("probed_once").http_status));
            },
        },
    },
    Family {
        name: "pathprobe_last_probe_timestamp_seconds",
        help: "When the latest probe finished, Unix seconds.",
        kind: Type::Gauge,
        source: Source::Target {
            has: probed_once,
            write: |w, s| {
                w.target("pathprobe_last_probe_timestamp_seconds", s, &[]);
                w.f64(s.last.as_ref().expect("probed_once").finished);
            },
        },
    },
    Family {
        name: "pathprobe_mesh_refreshes_total",
        help: "Peer-list refreshes (DNS or static) by result; a failed one keeps the last list.",
        kind: Type::Counter,
        source: Source::ProcessIf(mesh_on, |w, e| {
            let counts = e.peers.lock().refreshes;
            w.by_result(e, "pathprobe_mesh_refreshes_total", counts);
        }),
    },
    Family {
        name: "pathprobe_peer_duration_seconds",
        help: "Total time of the latest mesh probe of a peer.",
        kind: Type::Gauge,
        source: Source::ProcessIf(peer_rows, |w, e| {
            for row in e.peers.lock().rows.values() {
                w.series("pathprobe_peer_duration_seconds", source(e), [&[], &[&*row.labels], &[]]);
                w.f64(row.seconds);
            }
        }),
    },
    Family {
        name: "pathprobe_peer_failure_reason",
        help: "Why the latest mesh probe of a peer failed (none on success): one series per peer and payload, set to 1.",
        kind: Type::Gauge,
        source: Source::ProcessIf(peer_rows, |w, e| {
            for row in e.peers.lock().rows.values() {
                let labels = [&*row.labels, ",reason=\"", row.reason.as_str(), "\""];
                w.series("pathprobe_peer_failure_reason", source(e), [&[], &labels, &[]]);
                w.u64(1);
            }
        }),
    },
    Family {
        name: "pathprobe_peer_success",
        help: "1 if the latest mesh probe of a peer succeeded, else 0.",
        kind: Type::Gauge,
        source: Source::ProcessIf(peer_rows, |w, e| {
            for row in e.peers.lock().rows.values() {
                w.series("pathprobe_peer_success", source(e), [&[], &[&*row.labels], &[]]);
                w.u64(u64::from(row.reason == Reason::None));
            }
        }),
    },
    Family {
        name: "pathprobe_peers",
        help: "Mesh peers discovered (this agent left out).",
        kind: Type::Gauge,
        source: Source::ProcessIf(mesh_on, |w, e| w.process(e, "pathprobe_peers", &[], e.peers.lock().discovered)),
    },
    Family {
        name: "pathprobe_peers_probed",
        help: "Mesh peers this agent probes.",
        kind: Type::Gauge,
        source: Source::ProcessIf(mesh_on, |w, e| w.process(e, "pathprobe_peers_probed", &[], e.peers.lock().probed)),
    },
    Family {
        name: "pathprobe_probe_duration_seconds",
        help: "Total duration of every probe.",
        kind: Type::Histogram,
        source: Source::Target {
            has: probed_once,
            write: |w, s| {
                let names = [
                    "pathprobe_probe_duration_seconds_bucket",
                    "pathprobe_probe_duration_seconds_sum",
                    "pathprobe_probe_duration_seconds_count",
                ];
                let buckets = s.buckets.map(u64::from);
                w.histogram(names, s.labels(), &PROBE_LE, &buckets, s.duration_sum);
            },
        },
    },
    Family {
        name: "pathprobe_probes_in_flight",
        help: "Probes running now.",
        kind: Type::Gauge,
        source: Source::Process(|w, e| {
            w.series("pathprobe_probes_in_flight", source(e), [&[], &[], &[]]);
            w.f64(e.in_flight.load(std::sync::atomic::Ordering::Relaxed) as f64);
        }),
    },
    Family {
        name: "pathprobe_probes_skipped_total",
        help: "Probes not started because the previous probe of the target was still running.",
        kind: Type::Counter,
        source: Source::Target {
            has: |s| s.probed,
            write: |w, s| {
                w.target("pathprobe_probes_skipped_total", s, &[]);
                w.u64(s.skipped);
            },
        },
    },
    Family {
        name: "pathprobe_probes_total",
        help: "Probes run, by result.",
        kind: Type::Counter,
        source: Source::Target {
            has: |s| s.probed,
            write: |w, s| {
                w.target("pathprobe_probes_total", s, &["result=\"success\""]);
                w.u64(s.probes_success);
                w.target("pathprobe_probes_total", s, &["result=\"failure\""]);
                w.u64(s.probes_failure);
            },
        },
    },
    Family {
        name: "pathprobe_scheduler_lag_seconds",
        help: "How late probes start against their schedule.",
        kind: Type::Histogram,
        source: Source::Process(|w, e| {
            let lag = e.lag.lock().expect("not poisoned");
            let (buckets, sum) = (lag.buckets, lag.sum);
            drop(lag);
            let names = [
                "pathprobe_scheduler_lag_seconds_bucket",
                "pathprobe_scheduler_lag_seconds_sum",
                "pathprobe_scheduler_lag_seconds_count",
            ];
            w.histogram(names, source(e), &LAG_LE, &buckets, sum);
        }),
    },
    Family {
        name: "pathprobe_success",
        help: "1 if the latest probe of the target succeeded, else 0.",
        kind: Type::Gauge,
        source: Source::Target {
            has: probed_once,
            write: |w, s| {
                w.target("pathprobe_success", s, &[]);
                w.u64(u64::from(s.last.as_ref().expect("probed_once").success));
            },
        },
    },
    Family {
        name: "pathprobe_target_absent_info",
        help: "Always 1, per documented-absent target; the why label is the inventory's why.",
        kind: Type::Gauge,
        source: Source::Target {
            has: |s| s.why().is_some(),
            write: |w, s| {
                let why = s.why().expect("has");
                w.series("pathprobe_target_absent_info", s.labels(), [&[], &[], &[why]]);
                w.u64(1);
            },
        },
    },
    Family {
        name: "pathprobe_target_expect_blocked",
        help: "1 for a must-be-blocked target: success is the connection failing.",
        kind: Type::Gauge,
        source: Source::Target {
            has: |s| s.blocked,
            write: |w, s| {
                w.target("pathprobe_target_expect_blocked", s, &[]);
                w.u64(1);
            },
        },
    },
    Family {
        name: "pathprobe_target_expected",
        help: "1 if the inventory expects the target to exist, 0 for documented-absent targets.",
        kind: Type::Gauge,
        source: Source::Target {
            has: |_| true,
            write: |w, s| {
                w.target("pathprobe_target_expected", s, &[]);
                w.u64(u64::from(s.expected));
            },
        },
    },
    Family {
        name: "pathprobe_tls_cert_not_after_timestamp_seconds",
        help: "Expiry of the peer's leaf certificate, Unix seconds.",
        kind: Type::Gauge,
        source: Source::Target {
            has: |s| s.cert_not_after().is_some(),
            write: |w, s| {
                w.target("pathprobe_tls_cert_not_after_timestamp_seconds", s, &[]);
                w.f64(s.cert_not_after().expect("has"));
            },
        },
    },
    Family {
        name: "pathprobe_unclassified_errors_total",
        help: "Probe errors the reason table could not place precisely (reported under their family's fallback reason), by the phase they happened in; the agent logs the error chain when a target's state changes.",
        kind: Type::Counter,
        source: Source::Process(|w, e| {
            for phase in Phase::ALL {
                let n = e.unplaced_count(phase);
                w.process(e, "pathprobe_unclassified_errors_total", &["phase=\"", phase.as_str(), "\""], n);
            }
        }),
    },
];

fn discovery_on(e: &Exporter) -> bool {
    e.discovery.on.load(Ordering::Relaxed)
}

fn mesh_on(e: &Exporter) -> bool {
    e.peers.lock().on
}

fn peer_rows(e: &Exporter) -> bool {
    !e.peers.lock().rows.is_empty()
}

fn probed_once(s: &Series) -> bool {
    s.last.is_some()
}

/// The source labels, and where a label that sorts between `network` and `source_cluster` goes.
fn source(e: &Exporter) -> (&str, usize) {
    let labels = e.source_labels.as_str();
    (labels, labels.find(",source_cluster=").unwrap_or(labels.len()))
}

impl Series {
    /// The target's labels, and where a label that sorts right after `network` goes.
    fn labels(&self) -> (&str, usize) {
        (&self.labels, self.split as usize)
    }
}

fn build_info(w: &mut Writer, e: &Exporter) {
    let mut version = String::new();
    super::label(&mut version, "version", env!("CARGO_PKG_VERSION"));
    let mut revision = String::new();
    super::label(
        &mut revision,
        "revision",
        option_env!("PATHPROBE_REVISION").unwrap_or("unknown"),
    );
    w.series("pathprobe_build_info", source(e), [&[], &[&revision], &[&version]]);
    w.u64(1);
}

/// Appends lines to the chunk being built.
struct Writer<'a> {
    buf: &'a mut BytesMut,
    format: Format,
}

impl Writer<'_> {
    #[inline(always)]
    fn put(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn header(&mut self, f: &Family) {
        let name = self.format.family_name(f);
        let kind = match f.kind {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        };
        let help = ["# HELP ", name, " ", f.help, "\n"];
        let kind = ["# TYPE ", name, " ", kind, "\n"];
        // The text format as the `prometheus` crate wrote it; OpenMetrics as its spec shows it.
        let lines = match self.format {
            Format::Text => [help, kind],
            Format::OpenMetrics => [kind, help],
        };
        for part in lines.as_flattened() {
            self.put(part);
        }
    }

    /// `name{…} `: `set` is a rendered label set sorted by name, with the place where a label
    /// of the middle of the alphabet goes. Each of `first` (sorted before the set), `extra` (put
    /// at that place) and `last` (sorted after it) is one label in pieces, or none if empty.
    // Inlined: called for every line, mostly with constant empty parts that then cost nothing.
    #[inline(always)]
    fn series(&mut self, name: &str, (set, at): (&str, usize), [first, extra, last]: [&[&str]; 3]) {
        self.put(name);
        self.put("{");
        if !first.is_empty() {
            first.iter().for_each(|p| self.put(p));
            self.put(",");
        }
        if extra.is_empty() {
            self.put(set);
        } else {
            let (head, tail) = set.split_at(at);
            self.put(head);
            self.put(",");
            extra.iter().for_each(|p| self.put(p));
            self.put(tail);
        }
        if !last.is_empty() {
            self.put(",");
            last.iter().for_each(|p| self.put(p));
        }
        self.put("} ");
    }

    /// `name{target labels…} `, with `extra` (one label in pieces, or none) in its sorted place.
    #[inline(always)]
    fn target(&mut self, name: &str, s: &Series, extra: &[&str]) {
        self.series(name, s.labels(), [&[], extra, &[]]);
    }

    /// A line of the agent's own, with `extra` (one label in pieces, or none) in its sorted
    /// place among the source labels.
    fn process(&mut self, e: &Exporter, name: &str, extra: &[&str], value: u64) {
        self.series(name, source(e), [&[], extra, &[]]);
        self.u64(value);
    }

    /// A counter of the agent's own by `result`: `counts` in [`super::ReloadResult::ALL`]'s
    /// order (success, failure).
    fn by_result(&mut self, e: &Exporter, name: &str, counts: [u64; 2]) {
        for (r, n) in super::ReloadResult::ALL.iter().zip(counts) {
            self.process(e, name, &["result=\"", r.as_str(), "\""], n);
        }
    }

    /// A histogram from per-bucket (not cumulative) counts, the last one past every bound:
    /// cumulative `_bucket`s with `le` last, then `_sum` and `_count` in the format's order.
    fn histogram(
        &mut self,
        [bucket, sum_name, count_name]: [&str; 3],
        labels: (&str, usize),
        les: &[&str],
        counts: &[u64],
        sum: f64,
    ) {
        let mut cumulative = 0;
        for (le, n) in les.iter().chain(&["+Inf"]).zip(counts) {
            cumulative += n;
            // The bulk of the exposition: written as directly as it gets.
            for part in [bucket, "{", labels.0, ",le=\"", le, "\"} "] {
                self.put(part);
            }
            self.u64(cumulative);
        }
        let none: [&[&str]; 3] = [&[], &[], &[]];
        if self.format == Format::OpenMetrics {
            self.series(count_name, labels, none);
            self.u64(cumulative);
        }
        self.series(sum_name, labels, none);
        self.f64(sum);
        if self.format == Format::Text {
            self.series(count_name, labels, none);
            self.u64(cumulative);
        }
    }

    /// An integer value and the line's end.
    fn u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&digits[i..]);
        self.buf.put_u8(b'\n');
    }

    /// A float value as `f64`'s `Display` writes it (the `prometheus` crate's form) and the
    /// line's end.
    fn f64(&mut self, v: f64) {
        if (0.0..1e15).contains(&v) && v.fract() == 0.0 && v.is_sign_positive() {
            return self.u64(v as u64);
        }
        if v.is_nan() {
            self.put("NaN");
        } else if v.is_infinite() {
            self.put(if v > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(self.buf, "{v}");
        }
        self.buf.put_u8(b'\n');
    }
}

/// One scrape's exposition, produced a chunk at a time; also the `/metrics` response body.
pub struct Exposition {
    exporter: Arc<Exporter>,
    format: Format,
    chunk: usize,
    /// Where the next chunk starts: a family, and a slot of the target table within it.
    family: usize,
    slot: usize,
    header_written: bool,
    done: bool,
    /// Reused: once the previous chunk has been sent and dropped, its space is reclaimed.
    buf: BytesMut,
}

impl Exposition {
    pub(super) fn new(exporter: Arc<Exporter>, format: Format) -> Exposition {
        Exposition {
            exporter,
            format,
            chunk: CHUNK,
            family: 0,
            slot: 0,
            header_written: false,
            done: false,
            buf: BytesMut::new(),
        }
    }

    /// Smaller chunks (tests).
    pub fn with_chunk_size(mut self, chunk: usize) -> Exposition {
        self.chunk = chunk.max(1);
        self
    }

    /// Text or OpenMetrics, as negotiated.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The `Content-Type` for the response.
    pub fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    /// The next part of the exposition, `None` after the last.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        self.buf.reserve(self.chunk + 8 * 1024);
        let exporter = self.exporter.clone();
        let table = exporter.table();
        let mut w = Writer {
            buf: &mut self.buf,
            format: self.format,
        };
        while w.buf.len() < self.chunk {
            let Some(f) = FAMILIES.get(self.family) else {
                w.put(self.format.end());
                self.done = true;
                break;
            };
            match f.source {
                Source::Process(write) => {
                    w.header(f);
                    write(&mut w, &exporter);
                    self.family += 1;
                }
                Source::ProcessIf(on, write) => {
                    if on(&exporter) {
                        w.header(f);
                        write(&mut w, &exporter);
                    }
                    self.family += 1;
                }
                Source::Target { has, write } => {
                    while self.slot < table.slots.len() && w.buf.len() < self.chunk {
                        if let Some(s) = table.slots[self.slot].as_ref().filter(|s| has(s)) {
                            if !self.header_written {
                                w.header(f);
                                self.header_written = true;
                            }
                            write(&mut w, s);
                        }
                        self.slot += 1;
                    }
                    if self.slot >= table.slots.len() {
                        self.family += 1;
                        self.slot = 0;
                        self.header_written = false;
                    }
                }
            }
        }
        drop(table);
        Some(self.buf.split().freeze())
    }
}

impl Body for Exposition {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.get_mut().next_chunk().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LAG_BUCKETS, PROBE_BUCKETS};
    use super::*;

    #[test]
    fn le_values_are_the_bounds_display() {
        for (le, b) in PROBE_LE.iter().zip(PROBE_BUCKETS) {
            assert_eq!(*le, b.to_string());
        }
        for (le, b) in LAG_LE.iter().zip(LAG_BUCKETS) {
            assert_eq!(*le, b.to_string());
        }
    }

    #[test]
    fn families_are_sorted_by_name_and_floats_print_as_display() {
        assert!(FAMILIES.windows(2).all(|w| w[0].name < w[1].name));
        for v in [
            0.0,
            1.0,
            0.003,
            1764140000.123456,
            12.5,
            1e20,
            3e-7,
            1e15,
            123456789012.0,
        ] {
            let mut buf = BytesMut::new();
            Writer {
                buf: &mut buf,
                format: Format::Text,
            }
            .f64(v);
            assert_eq!(std::str::from_utf8(&buf).unwrap(), format!("{v}\n"));
        }
    }
}
