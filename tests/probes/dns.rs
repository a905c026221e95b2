use std::net::IpAddr;

use pathprobe::fault_servers::{self as testbed, DnsAnswer, Reply};
use pathprobe::probe::{self, Family, FamilyOutcome, Phase, ProbeResult};
use pathprobe::reason::Reason;

use crate::common::{adhoc, ctx, inventory, opts};
use crate::faults::faults;

faults! {
    dns_probe_of_a_missing_name_is_dns_nxdomain => DnsNxdomain,
    dns_probe_answered_by_servfail_is_dns_error => DnsError,
    a_silent_resolver_is_dns_timeout => DnsTimeout,
    http_probe_of_a_missing_name_is_dns_nxdomain => DnsNxdomain,
    both_families_silent_is_dns_timeout_with_both_recorded => DnsTimeout,
    a_name_without_address_records_is_dns_error_with_both_families_empty => DnsError,
}

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
        (
            "no-aaaa-answer.test",
            DnsAnswer::DropAaaa(vec![ip("127.0.0.1"), ip("::1")]),
        ),
        ("no-a-answer.test", DnsAnswer::DropA(vec![ip("127.0.0.1"), ip("::1")])),
        ("nodata.test", DnsAnswer::NoData),
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

async fn dns_probe_of_a_missing_name_is_dns_nxdomain() -> ProbeResult {
    let dns = zone().await;
    probe::probe(&adhoc("dns://gone.monitoring.svc", &opts()), &ctx(Some(dns.addr))).await
}

async fn dns_probe_answered_by_servfail_is_dns_error() -> ProbeResult {
    let dns = zone().await;
    probe::probe(&adhoc("dns://broken.test", &opts()), &ctx(Some(dns.addr))).await
}

async fn a_silent_resolver_is_dns_timeout() -> ProbeResult {
    let dns = zone().await;
    let started = std::time::Instant::now();
    let r = probe::probe(&adhoc("dns://silent.test", &opts()), &ctx(Some(dns.addr))).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    r
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

async fn http_probe_of_a_missing_name_is_dns_nxdomain() -> ProbeResult {
    let dns = zone().await;
    probe::probe(&adhoc("http://gone.test:9100/metrics", &opts()), &ctx(Some(dns.addr))).await
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

/// Each family's outcome, A first.
fn families(r: &ProbeResult) -> Vec<(Family, FamilyOutcome)> {
    let dns = r.trace.dns.expect("a name lookup records its families");
    dns.families.iter().map(|f| (f.family, f.outcome)).collect()
}

#[tokio::test]
async fn a_resolver_that_drops_aaaa_questions_costs_the_resolution_delay_not_the_timeout() {
    let dns = zone().await;
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let url = format!("http://no-aaaa-answer.test:{}/ok", server.addr.port());
    let mut o = opts();
    o.timeout = std::time::Duration::from_secs(3);
    let r = probe::probe(&adhoc(&url, &o), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(r.trace.address, Some(server.addr));
    assert_eq!(
        families(&r),
        vec![
            (Family::V4, FamilyOutcome::Answered),
            (Family::V6, FamilyOutcome::Silent)
        ]
    );
    let resolve = r.trace.phase(Phase::Resolve).unwrap();
    assert!(
        resolve < std::time::Duration::from_secs(1),
        "went on after the resolution delay, not the 3s timeout: {resolve:?}"
    );
    assert_eq!(r.trace.resolved, vec![ip("127.0.0.1")], "what the lookup returned");
    let target = adhoc(&url, &o);
    let verdict = pathprobe::report::verdict(&target, &r, pathprobe::report::Hints::Flags);
    assert!(verdict.contains("(AAAA question silent)"), "{verdict}");
    let json = pathprobe::report::json(&target, &r);
    assert_eq!(json["dns"]["ipv6"]["outcome"], "silent", "{json}");
}

#[tokio::test]
async fn a_resolver_that_drops_a_questions_still_reaches_the_target_over_ipv6() {
    let dns = zone().await;
    let server = testbed::http_on("[::1]:0", |_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let url = format!("http://no-a-answer.test:{}/ok", server.addr.port());
    let r = probe::probe(&adhoc(&url, &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(r.trace.address, Some(server.addr));
    assert_eq!(
        families(&r),
        vec![
            (Family::V4, FamilyOutcome::Silent),
            (Family::V6, FamilyOutcome::Answered)
        ]
    );
}

async fn both_families_silent_is_dns_timeout_with_both_recorded() -> ProbeResult {
    let dns = zone().await;
    let r = probe::probe(&adhoc("tcp://silent.test:80", &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(
        families(&r),
        vec![(Family::V4, FamilyOutcome::Silent), (Family::V6, FamilyOutcome::Silent)]
    );
    r
}

async fn a_name_without_address_records_is_dns_error_with_both_families_empty() -> ProbeResult {
    let dns = zone().await;
    let r = probe::probe(&adhoc("dns://nodata.test", &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(
        families(&r),
        vec![(Family::V4, FamilyOutcome::Empty), (Family::V6, FamilyOutcome::Empty)]
    );
    let nx = probe::probe(&adhoc("dns://gone.test", &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(nx.reason, Reason::DnsNxdomain, "NXDOMAIN stays dns_nxdomain");
    assert_eq!(
        families(&nx),
        vec![
            (Family::V4, FamilyOutcome::NxDomain),
            (Family::V6, FamilyOutcome::NxDomain)
        ]
    );
    r
}

#[tokio::test]
async fn a_truncated_answer_is_asked_again_over_tcp_and_every_address_is_listed() {
    let many: Vec<IpAddr> = (1..=60).map(|i| IpAddr::from([127, 0, 1, i])).collect();
    let (dns, log) = testbed::dns_on(
        "127.0.0.1:0".parse().unwrap(),
        vec![("big.test", DnsAnswer::Addresses(many.clone()))],
    )
    .await;
    let r = probe::probe(&adhoc("dns://big.test", &opts()), &ctx(Some(dns.addr))).await;
    assert_eq!(r.reason, Reason::None, "{:?}", r.error);
    assert_eq!(r.trace.resolved, many, "60 A records do not fit 512 bytes of UDP");
    let asked = log.lock().unwrap().clone();
    assert!(
        asked.iter().any(|q| q.qtype == "A" && !q.tcp) && asked.iter().any(|q| q.qtype == "A" && q.tcp),
        "UDP first, then TCP: {asked:?}"
    );
}

#[tokio::test]
async fn every_probe_kind_lists_what_its_name_resolved_to() {
    let dns = zone().await;
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    for url in [
        format!("tcp://two.test:{}", server.addr.port()),
        format!("http://two.test:{}/", server.addr.port()),
    ] {
        let r = probe::probe(&adhoc(&url, &opts()), &ctx(Some(dns.addr))).await;
        assert_eq!(r.reason, Reason::None, "{url}: {:?}", r.error);
        assert_eq!(r.trace.resolved, vec![ip("127.0.0.2"), ip("127.0.0.1")], "{url}");
    }
}

#[tokio::test]
async fn all_address_mode_gives_each_address_its_own_success_and_reason() {
    let dns = zone().await;
    let server = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let port = server.addr.port();
    let targets = inventory(
        &format!(
            "agent: {{source_cluster: test}}\n\
             targets:\n\
             - {{name: two, kind: http, url: 'http://two.test:{port}/', timeout: 1500ms, all_addresses: true}}\n"
        ),
        dir.path(),
    );
    let r = probe::probe(&targets[0], &ctx(Some(dns.addr))).await;
    let each: Vec<(String, Reason)> = r.addresses.iter().map(|a| (a.address.to_string(), a.reason)).collect();
    assert_eq!(
        each,
        vec![
            (format!("127.0.0.2:{port}"), Reason::ConnectRefused),
            (format!("127.0.0.1:{port}"), Reason::None),
        ],
        "127.0.0.2 refuses, 127.0.0.1 answers"
    );
    assert_eq!(
        r.reason,
        Reason::ConnectRefused,
        "one bad backend fails the target in this mode"
    );
    assert_eq!(
        r.trace.http_status, None,
        "the target's phases are the failing address's"
    );

    let exporter = std::sync::Arc::new(pathprobe::metrics::Exporter::new(&pathprobe::metrics::Source {
        node: "n1".into(),
        cluster: "test".into(),
        network: "host".into(),
    }));
    exporter.add_target(&targets[0]);
    exporter.observe(&targets[0], &r);
    let text = exporter.render(pathprobe::metrics::Format::Text);
    let line = |metric: &str, address: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&format!("address=\"{address}\"")))
            .map(String::from)
            .collect()
    };
    let ends = |lines: Vec<String>, value: &str| lines.len() == 1 && lines[0].ends_with(&format!(" {value}"));
    assert!(ends(line("pathprobe_address_success", "127.0.0.2"), "0"), "{text}");
    assert!(ends(line("pathprobe_address_success", "127.0.0.1"), "1"), "{text}");
    let refused = line("pathprobe_address_failure_reason", "127.0.0.2");
    assert!(
        refused.len() == 1 && refused[0].contains("reason=\"connect_refused\""),
        "{refused:?}"
    );
    let fine = line("pathprobe_address_failure_reason", "127.0.0.1");
    assert!(fine.len() == 1 && fine[0].contains("reason=\"none\""), "{fine:?}");

    // The default mode on the same name: the first address that works, no address series.
    let first = probe::probe(
        &adhoc(&format!("http://two.test:{port}/"), &opts()),
        &ctx(Some(dns.addr)),
    )
    .await;
    assert_eq!(first.reason, Reason::None);
    assert!(first.addresses.is_empty());
}
