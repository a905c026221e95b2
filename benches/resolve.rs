//! One name lookup as a probe makes it, against the test DNS server on loopback: both families
//! answering (the common case: the cost of a fresh hickory client per lookup plus two
//! questions), and a resolver that drops AAAA questions (the RFC 8305 resolution delay, not
//! the timeout).

// `criterion_group!` defines a public function that no doc comment can reach.
#![allow(missing_docs)]

use std::net::IpAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use pathprobe::probe::{Deadline, Resolver};
use pathprobe::target::ResolverSettings;
use pathprobe::testbed::{self, DnsAnswer};

fn lookup(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    let v6: IpAddr = "::1".parse().unwrap();
    let dns = rt.block_on(testbed::dns(vec![
        ("both.test", DnsAnswer::Addresses(vec![v4, v6])),
        ("no-aaaa.test", DnsAnswer::DropAaaa(vec![v4, v6])),
    ]));
    let resolver = Resolver::new(&ResolverSettings {
        nameservers: vec![dns.addr],
    })
    .unwrap();
    let mut g = c.benchmark_group("resolve");
    g.sample_size(20);
    for name in ["both.test", "no-aaaa.test"] {
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let (_, r) = resolver.lookup(name, Deadline::after(Duration::from_secs(3))).await;
                    assert!(r.is_ok());
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
