use std::net::IpAddr;

use pathprobe::probe::{self, Phase};
use pathprobe::reason::Reason;
use pathprobe::testbed::{self, DnsAnswer, Reply};

use crate::common::{adhoc, ctx, opts};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn zone() -> testbed::Server {
    testbed::dns(vec![
        ("prometheus.monitoring.svc", DnsAnswer::Addresses(vec![ip("127.0.0.1")])),
        ("v6only.test", DnsAnswer::Addresses(vec![ip("::1")])),
        ("two.test", DnsAnswer::Addresses(vec![ip("127.0.0.2"), ip("127.0.0.1")])),
        ("broken.test", DnsAnswer::ServFail),
        ("silent.test", DnsAnswer::Silent),
    ])
    .await
}

#[tokio::test]
async fn dns_probe_of_an_existing_name_lists_its_addresses() {
    let dns = zone().await;
    let r = probe::probe(&adhoc("dns://prometheus.monitoring.svc", &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(r.trace.resolved, vec![ip("127.0.0.1")]);
    assert!(r.trace.phase(Phase::Resolve).is_some());
}

#[tokio::test]
async fn dns_probe_of_a_missing_name_is_dns_nxdomain() {
    let dns = zone().await;
    let r = probe::probe(&adhoc("dns://gone.monitoring.svc", &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::DnsNxdomain, "{:?}", r.error);
}

#[tokio::test]
async fn dns_probe_answered_by_servfail_is_dns_error() {
    let dns = zone().await;
    let r = probe::probe(&adhoc("dns://broken.test", &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::DnsError, "{:?}", r.error);
}

#[tokio::test]
async fn a_silent_resolver_is_dns_timeout() {
    let dns = zone().await;
    let started = std::time::Instant::now();
    let r = probe::probe(&adhoc("dns://silent.test", &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::DnsTimeout, "{:?}", r.error);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn http_probe_of_a_name_resolves_then_connects() {
    let dns = zone().await;
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let url = format!("http://prometheus.monitoring.svc:{}/-/ready", server.addr.port());
    let r = probe::probe(&adhoc(&url, &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert!(r.trace.phase(Phase::Resolve).is_some());
    assert_eq!(r.trace.address, Some(server.addr));
}

#[tokio::test]
async fn http_probe_of_a_missing_name_is_dns_nxdomain() {
    let dns = zone().await;
    let r = probe::probe(&adhoc("http://gone.test:9100/metrics", &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::DnsNxdomain);
}

#[tokio::test]
async fn a_name_with_only_an_aaaa_record_is_reached_over_ipv6() {
    let dns = zone().await;
    let server = testbed::http_on("[::1]:0", |_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let url = format!("http://v6only.test:{}/", server.addr.port());
    let r = probe::probe(&adhoc(&url, &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert!(r.trace.address.unwrap().is_ipv6());
}

#[tokio::test]
async fn of_several_addresses_the_first_that_accepts_is_used_and_recorded() {
    let dns = zone().await;
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let url = format!("tcp://two.test:{}", server.addr.port());
    let r = probe::probe(&adhoc(&url, &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(
        r.trace.address,
        Some(server.addr),
        "127.0.0.2 refused, 127.0.0.1 accepted"
    );
}
