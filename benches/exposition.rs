//! How fast the scrape probe parses real exposition: node-exporter, Proxmox and OpenMetrics
//! bodies, and a large synthetic one (the size of a busy kube-state-metrics).

// `criterion_group!` defines a public function that no doc comment can reach.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pathprobe::exposition::{parse, Format};

fn bodies() -> Vec<(&'static str, String, Format)> {
    let node = include_str!("../tests/fixtures/exposition/node_exporter.prom").to_string();
    let proxmox = include_str!("../tests/fixtures/exposition/proxmox.prom").to_string();
    let om = include_str!("../tests/fixtures/exposition/openmetrics.txt").to_string();
    let mut big =
        String::from("# HELP kube_pod_status_phase The pods current phase.\n# TYPE kube_pod_status_phase gauge\n");
    for i in 0..50_000 {
        big.push_str(&format!(
            "kube_pod_status_phase{{namespace=\"ns-{}\",pod=\"pod-{i}\",uid=\"{i:08x}-aaaa-bbbb\",phase=\"Running\"}} 1\n",
            i % 40
        ));
    }
    vec![
        ("node_exporter", node, Format::PrometheusText),
        ("proxmox", proxmox, Format::PrometheusText),
        ("openmetrics", om, Format::OpenMetrics),
        ("ksm_50k_series", big, Format::PrometheusText),
    ]
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("exposition_parse");
    for (name, body, format) in bodies() {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| parse(body, format).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
