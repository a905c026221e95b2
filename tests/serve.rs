//! The agent's own endpoint against hostile clients, over real loopback sockets: slowloris,
//! idle connections, oversized heads, too many headers, endless bodies, clients that never read,
//! connection floods; and no endpoint or log line that shows a credential.

#[path = "common/agent.rs"]
mod agent;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pathprobe::serve::{self, Limits, Routes};

/// `/big` is 8 MiB (more than the socket buffers hold), anything else `ok`.
struct Test;

impl Routes for Test {
    fn respond(&self, path: &str, _: &http::HeaderMap) -> http::Response<serve::Body> {
        match path {
            "/big" => serve::text(200, vec![b'x'; 8 << 20]),
            _ => serve::text(200, "ok\n"),
        }
    }
}

fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(500),
        stall_timeout: Duration::from_millis(500),
        max_connections: 4,
        ..Limits::default()
    }
}

/// Serves [`Test`] under `limits` on a runtime of its own, for as long as the test runs.
fn server(limits: Limits) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            serve::serve_with(listener, Arc::new(Test), limits, std::future::pending()).await;
        });
    });
    rx.recv().unwrap()
}

/// A client whose reads give up after 10 s, far beyond every limit under test: a read that
/// times out means the server held the connection.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes; panics if it holds the connection open.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "the server kept the connection open ({e}); read so far: {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
        .parse()
        .unwrap()
}

fn get_ok(addr: SocketAddr) {
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = read_until_closed(&mut s);
    assert_eq!(status_of(&response), 200, "{}", String::from_utf8_lossy(&response));
}

#[test]
fn a_slowloris_client_is_cut_at_the_header_timeout() {
    let addr = server(limits());
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    // One header byte every 100 ms: the head never completes within the 500 ms allowed.
    let mut cut = false;
    for i in 0..100 {
        if s.write_all(if i % 2 == 0 { b"X" } else { b"y" }).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        // Once the server has closed, writes fail or the read sees the end.
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 512];
        let r = s.read(&mut b);
        s.set_nonblocking(false).unwrap();
        if r.is_ok() || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock) {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "the server still reads a head that has dripped for {:?}",
        started.elapsed()
    );
    get_ok(addr);
}

#[test]
fn an_idle_connection_is_closed_and_a_kept_alive_one_too() {
    let addr = server(limits());
    let mut idle = connect(addr);
    assert!(read_until_closed(&mut idle).is_empty(), "closed without an answer");

    let mut kept = connect(addr);
    kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let response = read_until_closed(&mut kept);
    assert_eq!(status_of(&response), 200);
}

#[test]
fn an_oversized_request_head_is_refused_with_431() {
    let addr = server(limits());
    let mut s = connect(addr);
    let huge = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = s.write_all(huge.as_bytes());
    assert_eq!(status_of(&read_until_closed(&mut s)), 431);

    let mut s = connect(addr);
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(64 * 1024));
    let _ = s.write_all(long_line.as_bytes());
    let status = status_of(&read_until_closed(&mut s));
    assert!(status == 414 || status == 431, "{status}");
    get_ok(addr);
}

#[test]
fn too_many_request_headers_are_refused_with_431() {
    let addr = server(limits());
    let mut s = connect(addr);
    let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..(Limits::default().max_headers + 10) {
        head.push_str(&format!("X-H{i}: v\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    assert_eq!(status_of(&read_until_closed(&mut s)), 431);
}

#[test]
fn an_endless_request_body_is_not_read_and_the_connection_closes() {
    let addr = server(limits());
    let mut s = connect(addr);
    s.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
        .unwrap();
    let writer = s.try_clone().unwrap();
    let feeding = std::thread::spawn(move || {
        let mut w = writer;
        let chunk = [b'z'; 4096];
        // Until the server closes: writes then fail with a reset or a broken pipe.
        for _ in 0..250_000 {
            if w.write_all(&chunk).is_err() {
                return true;
            }
        }
        false
    });
    let response = read_until_closed(&mut s);
    assert_eq!(status_of(&response), 405);
    assert!(feeding.join().unwrap(), "the server drained a gigabyte of body");
}

#[test]
fn a_client_that_never_reads_its_response_loses_the_connection_and_frees_its_slot() {
    let addr = server(Limits {
        max_connections: 1,
        ..limits()
    });
    let mut s = connect(addr);
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The only slot is held by a response nobody reads; the next client is served once the
    // stall timeout cuts it.
    get_ok(addr);
    let got = read_until_closed(&mut s);
    assert!(
        got.len() < 8 << 20,
        "the whole body was sent to a client that did not read"
    );
}

#[test]
fn a_connection_flood_beyond_the_cap_waits_and_is_served_when_slots_free() {
    let addr = server(limits());
    let flood: Vec<TcpStream> = (0..limits().max_connections * 4).map(|_| connect(addr)).collect();
    get_ok(addr);
    drop(flood);
    get_ok(addr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_and_no_log_line_shows_a_credential() {
    use pathprobe::fault_servers::{self as testbed, Reply};
    let dir = tempfile::tempdir().unwrap();
    let password = "hunter2-PASSWORD-b6f1";
    let token = "tok-SECRET-7c2a";
    let header = "hdr-APIKEY-93de";
    std::fs::write(dir.path().join("password"), password).unwrap();
    std::fs::write(dir.path().join("token"), token).unwrap();
    // The targets refuse, redirect and fail, so every error path is taken with the secrets set.
    let refusing = testbed::http(|_: &testbed::Seen<'_>| Reply::new(401, "who are you")).await;
    let redirecting =
        testbed::http(|s: &testbed::Seen<'_>| Reply::new(302, "").header("Location", format!("{}x", s.path))).await;
    let broken = testbed::http(|_: &testbed::Seen<'_>| Reply::new(200, "not { metrics")).await;
    let config = dir.path().join("inventory.yaml");
    std::fs::write(
        &config,
        format!(
            "agent: {{ source_cluster: lab, network: pod }}\ndefaults: {{ interval: 1s, timeout: 500ms }}\ntargets:\n\
             - {{ name: basic, kind: http, url: \"http://{r}/\", basic_auth: {{ username: admin, password_file: password }}, headers: {{ X-Api-Key: {header} }} }}\n\
             - {{ name: bearer, kind: http, url: \"http://{d}/a\", bearer_token_file: token, max_redirects: 3 }}\n\
             - {{ name: scrape, kind: scrape, url: \"http://{b}/metrics\", bearer_token_file: token }}\n",
            r = refusing.addr,
            d = redirecting.addr,
            b = broken.addr,
        ),
    )
    .unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let agent = agent::Agent::start(&config, "node-a", &[]);
        agent.wait_metrics("every target failed once", Duration::from_secs(10), |t| {
            agent::series(t, "pathprobe_failure_reason", &[])
                .iter()
                .filter(|l| !l.contains("reason=\"none\"") && l.ends_with(" 1"))
                .count()
                == 3
        });
        let mut seen = String::new();
        for path in [
            "/",
            "/metrics",
            "/healthz",
            "/readyz",
            "/mesh",
            "/nope",
            "/debug/vars",
            "/config",
        ] {
            seen.push_str(&agent.get(path, None).1);
        }
        seen.push_str(
            &agent
                .get("/metrics", Some("application/openmetrics-text;version=1.0.0"))
                .1,
        );
        let logs = agent.logs.lock().unwrap();
        for line in logs.iter() {
            seen.push_str(&line.to_string());
        }
        seen
    })
    .await
    .unwrap();
    for secret in [password, token, header] {
        assert!(!seen.contains(secret), "{secret} shown:\n{seen}");
    }
    assert!(seen.contains("http_auth"), "the failures were observed");
}
