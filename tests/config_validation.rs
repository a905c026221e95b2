//! The inventory's rules: one bad fixture per rule with its exact message, and the positive cases
//! (the seed inventory, ranges, instances, defaults, TLS, secrets, ad-hoc targets).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pathprobe::adhoc::{self, AdhocOptions};
use pathprobe::config::{self, ConfigErrors};
use pathprobe::target::{Auth, Host, Inventory, Kind, Network, StatusRanges, Target};
use rustls::pki_types::ServerName;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// (fixture, the exact `ConfigErrors` display).
const BAD: &[(&str, &str)] = &[
    (
        "unknown_field.yaml",
        "targets[0].intreval: unknown field `intreval`, expected one of `name`, `job`, `cluster`, `kind`, `url`, `address`, `interval`, `timeout`, `tls`, `basic_auth`, `bearer_token_file`, `headers`, `method`, `expect`, `body_limit`, `max_redirects`, `all_addresses`, `max_addresses`, `expected`, `why` (line 7, column 5); did you mean `interval`? fix its spelling or remove it",
    ),
    (
        "malformed_yaml.yaml",
        "not valid YAML at line 6, column 4: did not find expected '-' indicator, while parsing a block collection at line 4 column 3; fix the syntax there (indentation, quotes, brackets)",
    ),
    (
        "bad_duration.yaml",
        "targets[0].interval: `30 seconds` is not a duration; write a number and a unit (ms, s, m, h, d, w, y), Prometheus-style, e.g. 500ms, 30s, 5m or 1m30s",
    ),
    (
        "zero_duration.yaml",
        "targets[0].timeout: `0s` is zero; give a positive duration, e.g. 30s",
    ),
    (
        "missing_secret.yaml",
        "targets[0].basic_auth.password_file: cannot read /nonexistent/pathprobe/proxmox-password: No such file or directory (os error 2); create the file or mount the Secret there",
    ),
    (
        "range_backwards.yaml",
        "targets[0].url: `10.10.0.43-40` runs backwards; write the lower octet first: 10.10.0.40-43",
    ),
    (
        "range_not_octet.yaml",
        "targets[0].address: `10.10.0.40-300` ends at 300, which is not an octet; end the range at 255 at most",
    ),
    (
        "range_not_ipv4.yaml",
        "targets[0].address: `10.10.40-43` is not a last-octet range; write an IPv4 address whose last octet is a range, e.g. 10.10.0.40-43",
    ),
    (
        "range_ipv6.yaml",
        "targets[0].url: `[fd00::40-43]` is a range on an IPv6 address; ranges expand only the last octet of an IPv4 address (e.g. 10.10.0.40-43), list IPv6 targets one by one",
    ),
    (
        "range_dns_name.yaml",
        "targets[0].address: `db.example.10-12` is a range on a DNS name; ranges expand only the last octet of an IPv4 address (e.g. 10.10.0.40-43), list names one by one",
    ),
    (
        "url_credentials.yaml",
        "targets[0].url: https://example.com:8443/health carries credentials in the URL; remove them and use basic_auth.username with basic_auth.password_file",
    ),
    (
        "url_for_tcp.yaml",
        "targets[0].url: tcp targets dial an address, not a URL (http://10.0.0.1:22/); write address: host:port, or use kind http or scrape",
    ),
    (
        "address_for_scrape.yaml",
        "targets[0].address: scrape targets take a url, not an address; write url: http://host:port/path (https:// for TLS)",
    ),
    (
        "missing_kind.yaml",
        "targets[0].kind: missing; set it to one of tcp, tls, http, scrape, dns (or expected: false for a documented-absent target)",
    ),
    (
        "unknown_kind.yaml",
        "targets[0].kind: `icmp` is not a probe kind; use one of tcp, tls, http, scrape, dns",
    ),
    (
        "bad_scheme.yaml",
        "targets[0].url: scheme `ftp` is not supported; use http:// or https://, or for other protocols kind tcp or tls with an address",
    ),
    (
        "duplicate_target.yaml",
        "targets[1]: duplicates targets[0] (name `node-exporter`, instance `10.10.0.42:9100`); give one of them another name, or remove one",
    ),
    (
        "absent_without_why.yaml",
        "targets[0].why: missing; a target with expected: false must say why it is absent (it is shown with the target and its alert)",
    ),
    (
        "empty_name.yaml",
        "targets[0].name: empty; every target needs a name (its `target` label)",
    ),
    (
        "bad_body_regex.yaml",
        "targets[0].expect.body_regex: `(ok` is not a valid regular expression (unclosed group); fix the pattern (Rust regex syntax)",
    ),
    (
        "bad_status_range.yaml",
        "targets[0].expect.status: `399-300` runs backwards; write the lower code first: 300-399",
    ),
    (
        "bad_network.yaml",
        "agent.network: `node` is not host or pod; set host (probing from the node's network namespace) or pod",
    ),
    (
        "insecure_with_ca.yaml",
        "targets[0].tls.ca_file: given with insecure_skip_verify: true, which skips verification, so the CA would never be used; remove one of them",
    ),
    (
        "cert_without_key.yaml",
        "targets[0].tls.key_file: missing; cert_file needs the matching key_file for mTLS",
    ),
    (
        "bad_header_name.yaml",
        "targets[0].headers.X Scope: `X Scope` is not a valid header name; use letters, digits and hyphens, e.g. X-Scope-OrgID",
    ),
    (
        "bad_header_value.yaml",
        "targets[0].headers.X-Api-Key: the value is not a valid header value (control characters, newlines or non-ASCII); fix it",
    ),
    (
        "basic_auth_and_bearer.yaml",
        "targets[0].bearer_token_file: given together with basic_auth; a request carries one Authorization header, keep one of them",
    ),
    (
        "password_in_config.yaml",
        "targets[0].basic_auth.password: unknown field `password`, expected `username` or `password_file` (line 7, column 36); passwords are never written in the config: put it in a file (a mounted Secret) and name it in basic_auth.password_file\n\
         targets[0].basic_auth.password_file: missing; name the file that holds the password (a mounted Secret), passwords are never written in the config",
    ),
    (
        "missing_source_cluster.yaml",
        "agent.source_cluster: missing; set it to the cluster this agent runs in (the source_cluster label), or run the agent with --source-cluster or PATHPROBE_SOURCE_CLUSTER",
    ),
    (
        "many_errors.yaml",
        "agent.network: `bridge` is not host or pod; set host (probing from the node's network namespace) or pod\n\
         defaults.interval: `30` is not a duration; write a number and a unit (ms, s, m, h, d, w, y), Prometheus-style, e.g. 500ms, 30s, 5m or 1m30s\n\
         targets[0].address: `10.0.0.1` has no port; write host:port, e.g. 10.0.0.1:443\n\
         targets[1].tls: the url is plain http://, there is no TLS to configure; use https://, or remove tls\n\
         targets[1].max_redirects: `1000` is not a number of redirects; use a whole number from 0 (not followed) to 255\n\
         targets[2].address: `10.0.0.3` is an IP address; a dns target resolves a name, e.g. kubernetes.default.svc.cluster.local\n\
         targets[2].basic_auth: only http and scrape targets use it, this one is dns; remove it, or change the kind",
    ),
    (
        "typos_and_errors.yaml",
        "agent.netwrok: unknown field `netwrok`, expected one of `source_cluster`, `network`, `resolver` (line 3, column 3); did you mean `network`? fix its spelling or remove it\n\
         defaults.intervall: unknown field `intervall`, expected one of `interval`, `timeout`, `body_limit` (line 5, column 3); did you mean `interval`? fix its spelling or remove it\n\
         targets[0].timeout: `5 seconds` is not a duration; write a number and a unit (ms, s, m, h, d, w, y), Prometheus-style, e.g. 500ms, 30s, 5m or 1m30s\n\
         targets[1].adress: unknown field `adress`, expected one of `name`, `job`, `cluster`, `kind`, `url`, `address`, `interval`, `timeout`, `tls`, `basic_auth`, `bearer_token_file`, `headers`, `method`, `expect`, `body_limit`, `max_redirects`, `all_addresses`, `max_addresses`, `expected`, `why` (line 13, column 5); did you mean `address`? fix its spelling or remove it\n\
         targets[1].address: missing; tcp targets need address: host:port\n\
         targets[2].tls.ca_fil: unknown field `ca_fil`, expected one of `insecure_skip_verify`, `ca_file`, `server_name`, `cert_file`, `key_file` (line 14, column 64); did you mean `ca_file`? fix its spelling or remove it\n\
         targets[2].kind: `https` is not a probe kind; use one of tcp, tls, http, scrape, dns\n\
         targets[3].interval: invalid type: map, expected a single value (a string or a number) (line 18, column 5); give it a value of the expected type",
    ),
    (
        "all_addresses_on_dns.yaml",
        "targets[0].all_addresses: dns targets already report every address they resolve to (resolved); remove it",
    ),
    (
        "max_addresses_without_all.yaml",
        "targets[0].max_addresses: only used with all_addresses: true; set that, or remove max_addresses",
    ),
    (
        "interval_too_short.yaml",
        "targets[0].interval: `1ms` is below the 1s minimum; every node probes every target, so more often than once a second loads the target without telling more: use 1s or more",
    ),
    (
        "body_limit_too_large.yaml",
        "targets[0].body_limit: `10GiB` is over the 256MiB maximum; a body is held in memory, --max-in-flight probes at once: use 256MiB or less",
    ),
    (
        "too_many_targets.yaml",
        "targets[39]: the inventory reaches 10240 targets here (ranges expanded), over the 10000 one agent probes; split it between agents (e.g. per cluster), or list fewer targets",
    ),
    (
        "max_addresses_too_many.yaml",
        "targets[0].max_addresses: `500` is not a number of addresses; use a whole number from 1 to 64 (each address has its own series)",
    ),
];

/// Four typos and four other errors, in one run: unknown fields no longer stop at the first
/// and hide the rest (`targets[1].adress` used to hide `targets[0].timeout`).
#[test]
fn every_unknown_field_comes_with_every_other_error_in_one_run() {
    let e = config::load(&fixtures().join("typos_and_errors.yaml")).unwrap_err();
    let want: Vec<&str> = BAD
        .iter()
        .find(|(f, _)| *f == "typos_and_errors.yaml")
        .map(|(_, w)| w.lines().map(str::trim).collect())
        .unwrap();
    assert_eq!(want.len(), 8);
    let got: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(got, want);
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "agent.netwrok",
            "defaults.intervall",
            "targets[0].timeout",
            "targets[1].adress",
            "targets[1].address",
            "targets[2].tls.ca_fil",
            "targets[2].kind",
            "targets[3].interval"
        ]
    );
}

#[test]
fn the_same_typo_in_two_targets_is_reported_at_each_line() {
    let yaml = "agent: { source_cluster: a }\ntargets:\n  - name: x\n    kind: tcp\n    adress: 10.0.0.1:22\n  - name: y\n    kind: tcp\n    adress: 10.0.0.2:22\n";
    let e = config::parse(yaml, Path::new(".")).unwrap_err();
    let unknown: Vec<&config::ConfigError> = e.iter().filter(|e| e.message.starts_with("unknown field")).collect();
    assert_eq!(unknown.len(), 2, "{e}");
    assert_eq!(unknown[0].path, "targets[0].adress");
    assert!(unknown[0].message.contains("(line 5, column 5)"), "{e}");
    assert_eq!(unknown[1].path, "targets[1].adress");
    assert!(unknown[1].message.contains("(line 8, column 5)"), "{e}");
}

#[test]
fn a_field_of_the_wrong_shape_is_one_error_not_also_missing() {
    let yaml = "agent: { source_cluster: a }\ntargets:\n  - { name: [x, y], kind: tcp, address: \"10.0.0.1:22\" }\n  - { name: z, kind: tcp, address: \"10.0.0.2\" }\n";
    let e = config::parse(yaml, Path::new(".")).unwrap_err();
    let got: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), 2, "{e}");
    assert!(got[0].starts_with("targets[0].name: invalid type: sequence"), "{e}");
    assert!(got[1].starts_with("targets[1].address: `10.0.0.2` has no port"), "{e}");
}

/// Fixtures that must validate.
const GOOD: &[&str] = &["good_absent_with_settings.yaml"];

#[test]
fn every_bad_fixture_has_its_exact_message() {
    let mut failures = Vec::new();
    for (file, want) in BAD {
        match config::load(&fixtures().join(file)) {
            Ok(_) => failures.push(format!("{file}: validated, expected:\n  {want}")),
            Err(e) => {
                let got = e.to_string();
                if got != *want {
                    failures.push(format!("{file}:\n  got:  {got}\n  want: {want}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_fixture_is_in_the_table() {
    for entry in fs::read_dir(fixtures()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            BAD.iter().any(|(f, _)| *f == name) || GOOD.contains(&name.as_str()),
            "{name} is not in the table"
        );
    }
}

#[test]
fn good_fixtures_validate() {
    for file in GOOD {
        if let Err(e) = config::load(&fixtures().join(file)) {
            panic!("{file}:\n{e}");
        }
    }
    // Probe settings on an expected: false target are documentation: the missing password file
    // is not read.
    let inv = config::load(&fixtures().join("good_absent_with_settings.yaml")).unwrap();
    assert!(inv.targets.is_empty());
    assert_eq!(inv.absent.len(), 1);
    assert_eq!(inv.absent[0].instance, "10.10.0.11:8006");
    assert_eq!(inv.absent[0].kind, Some(Kind::Scrape));
}

#[test]
fn errors_are_collected_one_per_line() {
    let e = config::load(&fixtures().join("many_errors.yaml")).unwrap_err();
    assert_eq!(e.len(), 7);
    assert_eq!(e.to_string().lines().count(), 7);
    assert_eq!(e.0[2].path, "targets[0].address");
}

#[test]
fn a_missing_config_file_is_one_error() {
    let e = config::load(Path::new("/nonexistent/pathprobe/inventory.yaml")).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(
        e.to_string(),
        "/nonexistent/pathprobe/inventory.yaml: cannot read the inventory: No such file or directory (os error 2); check the path"
    );
}

fn seed() -> config::Loaded {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/inventory.yaml");
    config::load_with_warnings(&path).unwrap_or_else(|e| panic!("config/inventory.yaml:\n{e}"))
}

fn named<'a>(inv: &'a Inventory, name: &str) -> Vec<&'a Target> {
    inv.targets.iter().filter(|t| t.name == name).collect()
}

#[test]
fn the_seed_inventory_validates() {
    let loaded = seed();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let inv = loaded.inventory;
    assert_eq!(inv.agent.source_cluster, "prod");
    assert_eq!(inv.agent.network, Network::Host);
    assert_eq!(inv.targets.len(), 15);
    let absent: Vec<&str> = inv.absent.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(absent, ["kube-proxy", "kube-scheduler", "kube-controller-manager"]);
    assert!(inv.absent.iter().all(|a| !a.why.is_empty() && a.cluster == "prod"));

    let counts = [
        ("proxmox-ruapehu", 1, Kind::Scrape, "prod"),
        ("talos-kubelets", 4, Kind::Tls, "prod"),
        ("talos-node-exporter", 4, Kind::Scrape, "prod"),
        ("kube-state-metrics", 1, Kind::Scrape, "prod"),
        ("argocd-metrics", 1, Kind::Scrape, "prod"),
        ("argocd-server-metrics", 1, Kind::Scrape, "prod"),
        ("proxmox-carrick", 1, Kind::Scrape, "monit"),
        ("talos-monitor", 1, Kind::Scrape, "monit"),
        ("claude-agent", 1, Kind::Tcp, "agentic"),
    ];
    for (name, n, kind, cluster) in counts {
        let ts = named(&inv, name);
        assert_eq!(ts.len(), n, "{name}");
        for t in ts {
            assert_eq!(t.kind(), kind, "{name}");
            assert_eq!(t.cluster, cluster, "{name}");
            assert_eq!(t.job, name, "job defaults to the name");
        }
    }

    let pve = named(&inv, "proxmox-ruapehu")[0];
    assert_eq!(pve.instance, "10.10.0.10:8006");
    assert_eq!(pve.timeout, Duration::from_secs(10));
    assert_eq!(pve.interval, Duration::from_secs(30));
    let tls = pve.tls().expect("https has TLS settings");
    assert!(tls.insecure_skip_verify);
    let http = pve.http().unwrap();
    assert_eq!(
        http.url.as_str(),
        "https://10.10.0.10:8006/api2/prometheus?format=prometheus"
    );
    match &http.auth {
        Some(Auth::Basic { username, password }) => {
            assert_eq!(username, "root@pam");
            assert_eq!(password.expose(), "placeholder-not-a-real-password");
        }
        other => panic!("{other:?}"),
    }

    let kubelets: Vec<&str> = named(&inv, "talos-kubelets")
        .iter()
        .map(|t| t.instance.as_str())
        .collect();
    assert_eq!(
        kubelets,
        [
            "10.10.0.40:10250",
            "10.10.0.41:10250",
            "10.10.0.42:10250",
            "10.10.0.43:10250"
        ]
    );
    assert!(named(&inv, "talos-kubelets")
        .iter()
        .all(|t| t.tls().is_some() && t.http().is_none()));
    let agent = named(&inv, "claude-agent")[0];
    assert!(agent.tls().is_none() && agent.http().is_none());
}

fn server_name(s: &str) -> ServerName<'static> {
    ServerName::try_from(s.to_string()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

fn parse(text: &str) -> Result<Inventory, ConfigErrors> {
    config::parse(text, Path::new("/nonexistent"))
}

#[test]
fn ranges_expand_with_the_url_rewritten() {
    let inv = parse(
        "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: ne, kind: scrape, url: 'http://10.10.0.40-43:9100/metrics?x=1'}\n\
         - {name: kl, kind: tcp, address: '10.10.0.250-255:10250'}\n",
    )
    .unwrap();
    assert_eq!(inv.targets.len(), 10);
    let ne = named(&inv, "ne");
    let urls: Vec<&str> = ne.iter().map(|t| t.http().unwrap().url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://10.10.0.40:9100/metrics?x=1",
            "http://10.10.0.41:9100/metrics?x=1",
            "http://10.10.0.42:9100/metrics?x=1",
            "http://10.10.0.43:9100/metrics?x=1"
        ]
    );
    let instances: Vec<&str> = ne.iter().map(|t| t.instance.as_str()).collect();
    assert_eq!(
        instances,
        [
            "10.10.0.40:9100",
            "10.10.0.41:9100",
            "10.10.0.42:9100",
            "10.10.0.43:9100"
        ]
    );
    assert!(ne.iter().all(|t| t.name == "ne" && t.job == "ne"));
    assert_eq!(ne[3].endpoint.host, Host::Ip("10.10.0.43".parse().unwrap()));
    assert_eq!(ne[3].endpoint.port, 9100);
    let kl = named(&inv, "kl");
    assert_eq!(kl.len(), 6);
    assert_eq!(kl[5].instance, "10.10.0.255:10250");
}

#[test]
fn instances_as_prometheus_shows_them() {
    let inv = parse(
        "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: a, kind: http, url: 'http://Example.COM/health'}\n\
         - {name: b, kind: http, url: 'https://example.com/'}\n\
         - {name: c, kind: scrape, url: 'http://[::1]:9100/metrics'}\n\
         - {name: d, kind: tls, address: '[fd00::1]:443'}\n\
         - {name: e, kind: dns, address: 'Kubernetes.default.svc.cluster.local'}\n\
         - {name: f, kind: tcp, address: 'db-1.example.com:5432'}\n\
         - {name: g, kind: http, url: 'https://10.0.0.1:8443/'}\n",
    )
    .unwrap();
    let inst: Vec<&str> = inv.targets.iter().map(|t| t.instance.as_str()).collect();
    assert_eq!(
        inst,
        [
            "example.com:80",
            "example.com:443",
            "[::1]:9100",
            "[fd00::1]:443",
            "kubernetes.default.svc.cluster.local",
            "db-1.example.com:5432",
            "10.0.0.1:8443"
        ]
    );
    let ip6: IpAddr = "::1".parse().unwrap();
    assert_eq!(inv.targets[2].endpoint.host, Host::Ip(ip6));
    assert_eq!(inv.targets[4].kind(), Kind::Dns);
    assert_eq!(
        inv.targets[4].endpoint.host,
        Host::Name("kubernetes.default.svc.cluster.local".into())
    );
    // TLS only where there is TLS; the server name defaults to the host.
    assert!(inv.targets[0].tls().is_none());
    assert_eq!(inv.targets[1].tls().unwrap().server_name, server_name("example.com"));
    assert!(inv.targets[3].tls().is_some());
    assert!(inv.targets[5].tls().is_none());
}

#[test]
fn defaults_and_overrides() {
    let inv = parse(
        "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: a, kind: http, url: 'http://10.0.0.1/'}\n\
         - {name: b, job: jb, cluster: other, kind: http, url: 'http://10.0.0.1/', interval: 1m, timeout: 500ms,\n\
            method: post, body_limit: 1MiB, max_redirects: 3, expect: {status: [200, '300-399', 4xx], body_regex: '^ok'},\n\
            headers: {X-Scope-OrgID: tenant-1, X-Num: 1}}\n",
    )
    .unwrap();
    assert_eq!(inv.agent.network, Network::Host);
    assert!(inv.agent.resolver.nameservers.is_empty());
    let a = &inv.targets[0];
    assert_eq!((a.job.as_str(), a.cluster.as_str()), ("a", "prod"));
    assert_eq!(a.interval, Duration::from_secs(30));
    assert_eq!(a.timeout, Duration::from_secs(5));
    let h = a.http().unwrap();
    assert_eq!(h.method, http::Method::GET);
    assert_eq!(h.expect_status, StatusRanges::default_2xx());
    assert_eq!(h.body_limit, 4 << 20);
    assert_eq!(h.max_redirects, 0);
    assert!(h.auth.is_none() && h.body_regex.is_none() && h.headers.is_empty());

    let b = &inv.targets[1];
    assert_eq!((b.job.as_str(), b.cluster.as_str()), ("jb", "other"));
    assert_eq!(b.interval, Duration::from_secs(60));
    assert_eq!(b.timeout, Duration::from_millis(500));
    let h = b.http().unwrap();
    assert_eq!(h.method, http::Method::POST);
    assert_eq!(h.expect_status, StatusRanges(vec![(200, 200), (300, 399), (400, 499)]));
    assert_eq!(h.body_limit, 1 << 20);
    assert_eq!(h.max_redirects, 3);
    assert!(h.body_regex.as_ref().unwrap().is_match("ok then"));
    let headers: Vec<(&str, &str)> = h
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(headers, [("x-scope-orgid", "tenant-1"), ("x-num", "1")]);

    let inv = parse(
        "agent: {source_cluster: prod, network: pod, resolver: {nameservers: ['10.96.0.10:53', '1.1.1.1', '[fd00::a]:5353']}}\n\
         defaults: {interval: 1m30s, timeout: 10s, body_limit: 65536}\n\
         targets:\n\
         - {name: a, kind: scrape, url: 'http://10.0.0.1:9100/metrics'}\n",
    )
    .unwrap();
    assert_eq!(inv.agent.network, Network::Pod);
    let ns: Vec<String> = inv.agent.resolver.nameservers.iter().map(|a| a.to_string()).collect();
    assert_eq!(ns, ["10.96.0.10:53", "1.1.1.1:53", "[fd00::a]:5353"]);
    assert_eq!(inv.targets[0].interval, Duration::from_secs(90));
    assert_eq!(inv.targets[0].timeout, Duration::from_secs(10));
    assert_eq!(inv.targets[0].http().unwrap().body_limit, 65536);
}

#[test]
fn all_address_mode_is_off_by_default_and_bounded_when_on() {
    let inv = parse(
        "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: a, kind: http, url: 'http://api.example.internal/'}\n\
         - {name: b, kind: tcp, address: 'api.example.internal:443', all_addresses: true}\n\
         - {name: c, kind: tls, address: 'api.example.internal:443', all_addresses: true, max_addresses: 2}\n",
    )
    .unwrap();
    let modes: Vec<Option<usize>> = inv.targets.iter().map(|t| t.all_addresses).collect();
    assert_eq!(modes, [None, Some(8), Some(2)]);
}

#[test]
fn a_timeout_longer_than_the_interval_is_a_warning() {
    let loaded = config::parse_with_warnings(
        "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: a, kind: tcp, address: '10.0.0.1:22', interval: 10s, timeout: 1m}\n",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(loaded.inventory.targets.len(), 1);
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        ["targets[0].timeout: the timeout 1m is not below the interval 10s; a probe still running when the next is due makes that one skipped, shorten the timeout or lengthen the interval"]
    );
    // From the defaults: said once, on the defaults.
    let loaded = config::parse_with_warnings(
        "agent: {source_cluster: prod}\n\
         defaults: {interval: 5s, timeout: 10s}\n\
         targets:\n\
         - {name: a, kind: tcp, address: '10.0.0.1:22'}\n\
         - {name: b, kind: tcp, address: '10.0.0.2:22'}\n",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].path, "defaults.timeout");
}

#[test]
fn secrets_are_read_trimmed_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "password", "hunter2-pw\n\n");
    write(dir.path(), "token", "  tok-abc123 \r\n\n");
    let text = "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: a, kind: http, url: 'https://10.0.0.1/', basic_auth: {username: admin, password_file: password}}\n\
         - {name: b, kind: scrape, url: 'http://10.0.0.1/metrics', bearer_token_file: token}\n";
    let path = write(dir.path(), "inventory.yaml", text);
    let inv = config::load(&path).unwrap();
    match &inv.targets[0].http().unwrap().auth {
        // Surrounding whitespace is trimmed, as Prometheus does.
        Some(Auth::Basic { password, .. }) => assert_eq!(password.expose(), "hunter2-pw"),
        other => panic!("{other:?}"),
    }
    match &inv.targets[1].http().unwrap().auth {
        Some(Auth::Bearer { token }) => assert_eq!(token.expose(), "tok-abc123"),
        other => panic!("{other:?}"),
    }
    let debug = format!("{inv:?}");
    assert!(!debug.contains("hunter2") && !debug.contains("tok-abc"), "{debug}");

    // With an error elsewhere in the same target, nothing secret is echoed either.
    let bad = text.replace(
        "url: 'http://10.0.0.1/metrics'",
        "url: 'http://10.0.0.1/metrics', expect: {body_regex: '('}",
    );
    let path = write(dir.path(), "bad.yaml", &bad);
    let e = config::load(&path).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(!format!("{e} {e:?}").contains("tok-abc"));

    // An empty secret is an error; a bearer token that cannot be a header value is one too,
    // and neither message shows the file's content.
    write(dir.path(), "empty", "\n");
    write(dir.path(), "badtoken", "tok\nsecond-line-secret\n");
    let bad = "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: a, kind: http, url: 'http://10.0.0.1/', basic_auth: {username: admin, password_file: empty}}\n\
         - {name: b, kind: http, url: 'http://10.0.0.1/', bearer_token_file: badtoken}\n";
    let e = config::parse(bad, dir.path()).unwrap_err();
    let shown = e.to_string();
    assert_eq!(e.len(), 2, "{shown}");
    assert_eq!(
        e.0[0].to_string(),
        format!(
            "targets[0].basic_auth.password_file: {} is empty; put the password in it",
            dir.path().join("empty").display()
        )
    );
    assert_eq!(e.0[1].path, "targets[1].bearer_token_file");
    assert!(!shown.contains("second-line-secret"), "{shown}");
}

#[test]
fn url_credentials_are_never_echoed() {
    let e = config::load(&fixtures().join("url_credentials.yaml")).unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("alice") && !shown.contains("s3cr3t"), "{shown}");
    // Nor when the URL is in the wrong place.
    let e = parse(
        "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: a, kind: tcp, url: 'https://alice:s3cr3t@example.com/'}\n\
         - {name: b, kind: http, tls: 'https://alice:s3cr3t@example.com/', url: 'https://example.com/'}\n",
    )
    .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("alice") && !shown.contains("s3cr3t"), "{shown}");
    // A structural error does not echo a misplaced string either.
    let e = parse(
        "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: a, kind: http, url: 'https://example.com/', basic_auth: 'admin:hunter2'}\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "targets[0].basic_auth: invalid type: a string, expected a mapping (line 3, column 66); give it a value of the expected type"
    );
}

#[test]
fn tls_files_resolve_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["ca.example".to_string()]).unwrap();
    let client = rcgen::generate_simple_self_signed(vec!["client.example".to_string()]).unwrap();
    fs::create_dir(dir.path().join("pki")).unwrap();
    write(&dir.path().join("pki"), "ca.pem", &ca.cert.pem());
    write(&dir.path().join("pki"), "client.pem", &client.cert.pem());
    write(&dir.path().join("pki"), "client.key", &client.key_pair.serialize_pem());
    write(dir.path(), "garbage.pem", "not a certificate\n");
    let text = "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: a, kind: tls, address: '10.0.0.1:443', tls: {ca_file: pki/ca.pem, server_name: api.example, cert_file: pki/client.pem, key_file: pki/client.key}}\n\
         - {name: b, kind: http, url: 'https://10.0.0.1:8443/', tls: {ca_file: pki/ca.pem}}\n";
    let path = write(dir.path(), "inventory.yaml", text);
    let inv = config::load(&path).unwrap();
    let a = inv.targets[0].tls().unwrap();
    assert!(!a.insecure_skip_verify);
    assert!(a.client_identity.is_some());
    assert_eq!(a.server_name, server_name("api.example"));
    let b = inv.targets[1].tls().unwrap();
    assert_eq!(b.server_name, server_name("10.0.0.1"));

    let bad = "agent: {source_cluster: prod}\n\
         targets:\n\
         - {name: a, kind: tls, address: '10.0.0.1:443', tls: {ca_file: garbage.pem}}\n\
         - {name: b, kind: tls, address: '10.0.0.1:443', tls: {ca_file: missing.pem}}\n\
         - {name: c, kind: tls, address: '10.0.0.1:443', tls: {cert_file: pki/client.pem, key_file: pki/ca.pem}}\n\
         - {name: d, kind: tls, address: '10.0.0.1:443', tls: {server_name: 'not a name'}}\n";
    let e = config::parse(bad, dir.path()).unwrap_err();
    let d = dir.path().display();
    assert_eq!(
        e.to_string(),
        format!(
            "targets[0].tls.ca_file: no PEM certificate could be used from it (no BEGIN CERTIFICATE block found); give a PEM file holding the CA certificate(s)\n\
             targets[1].tls.ca_file: cannot read {d}/missing.pem: No such file or directory (os error 2); check the path, or mount the file there\n\
             targets[2].tls.key_file: {d}/pki/ca.pem: no PRIVATE KEY block found; give the PEM private key that matches cert_file\n\
             targets[3].tls.server_name: \"not a name\" is not a valid DNS name or IP address; set tls.server_name to the name the certificate is for"
        )
    );
}

#[test]
fn adhoc_targets() {
    let o = AdhocOptions::default();
    assert_eq!(o.timeout, Duration::from_secs(5));

    let ts = adhoc::parse("tcp://10.0.0.1-3:22", &o).unwrap();
    assert_eq!(ts.len(), 3);
    assert!(ts
        .iter()
        .all(|t| t.name == "tcp://10.0.0.1-3:22" && t.job == "adhoc" && t.cluster.is_empty()));
    assert_eq!(ts[2].instance, "10.0.0.3:22");
    assert_eq!(ts[0].timeout, Duration::from_secs(5));
    assert_eq!(ts[0].kind(), Kind::Tcp);

    let ts = adhoc::parse("tls://example.com:443", &o).unwrap();
    assert_eq!(ts[0].kind(), Kind::Tls);
    assert!(ts[0].tls().is_some());

    let ts = adhoc::parse("http://[::1]:8080/healthz", &o).unwrap();
    assert_eq!((ts[0].kind(), ts[0].instance.as_str()), (Kind::Http, "[::1]:8080"));
    assert!(ts[0].tls().is_none());

    let insecure = AdhocOptions {
        insecure: true,
        timeout: Duration::from_secs(2),
        expect_status: Some("200,301".into()),
        ..AdhocOptions::default()
    };
    let ts = adhoc::parse("scrape+https://10.0.0.1:8006/api2/prometheus", &insecure).unwrap();
    assert_eq!(ts[0].kind(), Kind::Scrape);
    assert_eq!(ts[0].name, "scrape+https://10.0.0.1:8006/api2/prometheus");
    assert_eq!(ts[0].timeout, Duration::from_secs(2));
    assert!(ts[0].tls().unwrap().insecure_skip_verify);
    let h = ts[0].http().unwrap();
    assert_eq!(h.url.as_str(), "https://10.0.0.1:8006/api2/prometheus");
    assert_eq!(h.expect_status, StatusRanges(vec![(200, 200), (301, 301)]));
    // HTTP and TLS flags do not apply to tcp:// and are ignored there.
    assert!(adhoc::parse("tcp://10.0.0.1:22", &insecure).is_ok());

    let ts = adhoc::parse("dns://kubernetes.default.svc.cluster.local", &o).unwrap();
    assert_eq!(
        (ts[0].kind(), ts[0].instance.as_str()),
        (Kind::Dns, "kubernetes.default.svc.cluster.local")
    );

    // Errors use the flag, or `target`, as the path; credentials are never echoed.
    let e = adhoc::parse("https://alice:s3cr3t@example.com/", &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "target: https://example.com/ carries credentials in the URL; remove them and use basic_auth.username with basic_auth.password_file"
    );
    let e = adhoc::parse("ftp://example.com/", &o).unwrap_err();
    assert_eq!(e.0[0].path, "target");
    let e = adhoc::parse("example.com:443", &o).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("target: `example.com:443` is neither a target of the config nor an ad-hoc target"));
    let with_ca = AdhocOptions {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..AdhocOptions::default()
    };
    let e = adhoc::parse("https://example.com/", &with_ca).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--ca-file: cannot read /nonexistent/ca.pem: No such file or directory (os error 2); check the path, or mount the file there"
    );
    let user_only = AdhocOptions {
        basic_auth_user: Some("admin".into()),
        ..AdhocOptions::default()
    };
    let e = adhoc::parse("http://example.com/", &user_only).unwrap_err();
    assert_eq!(e.0[0].path, "--basic-auth-password-file");
    let bad_status = AdhocOptions {
        expect_status: Some("2xx,abc".into()),
        ..AdhocOptions::default()
    };
    let e = adhoc::parse("http://example.com/", &bad_status).unwrap_err();
    assert_eq!(e.0[0].path, "--expect-status");
    let e = adhoc::parse("tcp://10.0.0.43-40:22", &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "target: `10.0.0.43-40` runs backwards; write the lower octet first: 10.0.0.40-43"
    );
}

#[test]
fn a_client_key_that_does_not_match_its_certificate_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pathprobe::fault_servers::TestCa::new();
    let a = ca.issue_valid(&["client-a"]);
    let b = ca.issue_valid(&["client-b"]);
    fs::write(dir.path().join("client.pem"), &a.cert_pem).unwrap();
    fs::write(dir.path().join("client.key"), &b.key_pem).unwrap();
    let yaml = "agent: { source_cluster: t }\ntargets:\n  - { name: m, kind: tls, address: \"10.0.0.1:443\", tls: { cert_file: client.pem, key_file: client.key } }\n";
    let err = config::parse(yaml, dir.path()).unwrap_err().to_string();
    assert!(
        err.starts_with("targets[0].tls.key_file: ") && err.contains("does not belong to cert_file"),
        "{err}"
    );
}

/// The fields a raw struct accepts, as serde lists them when it meets one it does not know.
fn fields_of<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let err = match serde_yaml_ng::from_str::<T>("__not_a_field__: 1") {
        Ok(_) => panic!("an unknown field was accepted"),
        Err(e) => e.to_string(),
    };
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("no field list in {err:?}"))
        .1;
    expected.split('`').skip(1).step_by(2).map(String::from).collect()
}

/// Every field of the inventory, as a full path (`targets[].tls.ca_file`), from the code.
fn inventory_fields() -> Vec<String> {
    use pathprobe::config::raw::*;
    let sections: Vec<(&str, Vec<String>)> = vec![
        ("", fields_of::<RawConfig>()),
        ("agent.", fields_of::<RawAgent>()),
        ("agent.resolver.", fields_of::<RawResolver>()),
        ("defaults.", fields_of::<RawDefaults>()),
        ("targets[].", fields_of::<RawTarget>()),
        ("targets[].tls.", fields_of::<RawTls>()),
        ("targets[].basic_auth.", fields_of::<RawBasicAuth>()),
        ("targets[].expect.", fields_of::<RawExpect>()),
        ("discovery.", fields_of::<RawDiscovery>()),
        ("discovery.prometheus.", fields_of::<RawPrometheusDiscovery>()),
        ("mesh.", fields_of::<pathprobe::mesh::config::RawMesh>()),
        ("mesh.peers.", fields_of::<pathprobe::mesh::config::RawPeers>()),
    ];
    let mut out = Vec::new();
    for (prefix, fields) in sections {
        for f in fields {
            let path = format!("{prefix}{f}");
            // The sections themselves are documented by their own headings.
            if !["agent", "defaults", "targets", "discovery", "mesh"].contains(&path.as_str()) {
                out.push(path);
            }
        }
    }
    out
}

fn reference() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/inventory.md")).unwrap()
}

/// docs/inventory.md documents every field the code accepts, and nothing the code does not.
#[test]
fn the_inventory_reference_documents_every_field_and_only_real_ones() {
    let doc = reference();
    let fields = inventory_fields();
    assert!(fields.len() > 30, "{fields:?}");
    let documented: Vec<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(path, _)| path.to_string())
        .filter(|p| {
            ["agent.", "defaults.", "targets[].", "discovery.", "mesh."]
                .iter()
                .any(|s| p.starts_with(s))
        })
        .collect();
    let missing: Vec<&String> = fields.iter().filter(|f| !documented.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "docs/inventory.md has no row for {missing:?}: add one (type, default, what, example)"
    );
    let unknown: Vec<&String> = documented.iter().filter(|d| !fields.contains(d)).collect();
    assert!(
        unknown.is_empty(),
        "docs/inventory.md documents fields the code does not have: {unknown:?}"
    );
    for row in doc
        .lines()
        .filter(|l| l.starts_with("| `") && documented.iter().any(|d| l.starts_with(&format!("| `{d}`"))))
    {
        let cells: Vec<&str> = row.split(" | ").collect();
        assert_eq!(
            cells.len(),
            5,
            "a row needs field, type, default, what and example: {row}"
        );
        assert!(
            cells.iter().all(|c| !c.trim().trim_matches('|').trim().is_empty()),
            "empty cell in {row}"
        );
    }
}

/// The reference's full example is a valid inventory.
#[test]
fn the_inventory_reference_example_validates() {
    let doc = reference();
    let yaml = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml example");
    let dir = tempfile::tempdir().unwrap();
    let ca = pathprobe::fault_servers::TestCa::new();
    let client = ca.issue_valid(&["pathprobe-client"]);
    for (name, text) in [
        ("secrets/proxmox-ruapehu-password", "not-a-real-password\n"),
        ("secrets/mimir-token", "not-a-real-token\n"),
        ("certs/nas.pem", ca.cert_pem.as_str()),
        ("certs/internal-ca.pem", ca.cert_pem.as_str()),
        ("certs/client.pem", client.cert_pem.as_str()),
        ("certs/client.key", client.key_pem.as_str()),
    ] {
        let p = dir.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    let inv = config::parse(yaml, dir.path()).unwrap_or_else(|e| panic!("the example is invalid:\n{e}"));
    assert_eq!(inv.targets.len(), 4 + 6);
    assert_eq!(inv.absent.len(), 1);
    // Every field of the code is used by the example.
    for field in inventory_fields() {
        let leaf = field.rsplit(['.', ']']).next().unwrap();
        assert!(yaml.contains(&format!("{leaf}:")), "the example does not use {field}");
    }
}

/// Absurd but valid-looking: a million targets (3907 ranges of 256) stop at the entry that
/// crosses the limit, with one error, instead of a million schedules; a 0 timeout is refused.
#[test]
fn a_million_targets_stop_at_the_limit_with_one_error() {
    let mut text = String::from("agent: { source_cluster: prod }\ndefaults: { interval: 1m, timeout: 0s }\ntargets:\n");
    for i in 0..3907 {
        text.push_str(&format!(
            "  - {{ name: n{i}, kind: tcp, address: \"10.{}.{}.0-255:9100\" }}\n",
            i / 256,
            i % 256
        ));
    }
    let errors = config::parse(&text, Path::new("/")).unwrap_err().to_string();
    assert_eq!(
        errors,
        "defaults.timeout: `0s` is zero; give a positive duration, e.g. 30s\n\
         targets[39]: the inventory reaches 10240 targets here (ranges expanded), over the 10000 one agent probes; split it between agents (e.g. per cluster), or list fewer targets"
    );
}
