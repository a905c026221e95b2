//! OpenMetrics text for a scraper that asks for it (Prometheus asks first): the `prometheus`
//! crate only writes the older text format, so the gathered families are written out here.

use std::fmt::Write as _;

use prometheus::proto::{LabelPair, MetricFamily, MetricType};

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Writes the families as OpenMetrics 1.0 text, ending with `# EOF`.
pub fn encode(families: &[MetricFamily]) -> String {
    let mut out = String::with_capacity(64 * 1024);
    for family in families {
        let (kind, name) = match family.get_field_type() {
            MetricType::COUNTER => ("counter", family.name().trim_end_matches("_total")),
            MetricType::GAUGE => ("gauge", family.name()),
            MetricType::HISTOGRAM => ("histogram", family.name()),
            // The exporter registers neither.
            MetricType::SUMMARY | MetricType::UNTYPED => continue,
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "# HELP {name} {}", escape(family.help()));
        for m in family.get_metric() {
            let labels = m.get_label();
            match family.get_field_type() {
                MetricType::COUNTER => sample(
                    &mut out,
                    &format!("{name}_total"),
                    labels,
                    None,
                    m.get_counter().get_value(),
                ),
                MetricType::GAUGE => sample(&mut out, name, labels, None, m.get_gauge().get_value()),
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let bucket = format!("{name}_bucket");
                    for b in h.get_bucket() {
                        let le = float(b.upper_bound());
                        sample(&mut out, &bucket, labels, Some(&le), b.cumulative_count() as f64);
                    }
                    sample(&mut out, &bucket, labels, Some("+Inf"), h.get_sample_count() as f64);
                    sample(
                        &mut out,
                        &format!("{name}_count"),
                        labels,
                        None,
                        h.get_sample_count() as f64,
                    );
                    sample(&mut out, &format!("{name}_sum"), labels, None, h.get_sample_sum());
                }
                MetricType::SUMMARY | MetricType::UNTYPED => {}
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn sample(out: &mut String, name: &str, labels: &[LabelPair], le: Option<&str>, value: f64) {
    out.push_str(name);
    write_labels(out, labels, le.map(|le| ("le", le)));
    let _ = writeln!(out, " {}", float(value));
}

fn write_labels(out: &mut String, labels: &[LabelPair], extra: Option<(&str, &str)>) {
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let pairs = labels.iter().map(|l| (l.name(), l.value())).chain(extra);
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    out.push('}');
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}
