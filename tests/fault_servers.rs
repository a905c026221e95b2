//! The fault servers (the demo's and the tests' loopback fixtures) must not be the thing that
//! leaks: every connection they accept is let go once the client has, a server and all its
//! connections end with its handle, and the refused port stays refused.

use std::time::{Duration, Instant};

use pathprobe::fault_servers::{self, DnsAnswer, Server};
use pathprobe::probe::{ProbeContext, Resolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_fleet_releases_every_connection_its_probes_leave() {
    let fleet = pathprobe::demo::start().await.unwrap();
    let ctx = ProbeContext {
        resolver: std::sync::Arc::new(Resolver::new(&fleet.inventory.agent.resolver).unwrap()),
        pin: None,
    };
    // A first round creates what stays (the resolver's state, runtime threads).
    pathprobe::demo::probe_all(&fleet.inventory, &ctx).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = open_fds();
    for _ in 0..5 {
        pathprobe::demo::probe_all(&fleet.inventory, &ctx).await;
    }
    // Servers see the clients' FIN a moment after the probes end.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = open_fds();
    while now > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = open_fds();
    }
    assert!(
        now <= before,
        "five rounds left {} descriptors open ({before} → {now})",
        now - before
    );
}

#[tokio::test]
async fn the_refused_port_cannot_be_taken_by_anyone_else() {
    let addr = pathprobe::fault_servers::refused_port().await;
    // tokio's listener sets SO_REUSEADDR, as most servers do.
    let taken = tokio::net::TcpListener::bind(addr).await;
    assert!(taken.is_err(), "another socket bound {addr}");
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

/// Tasks alive on this (current-thread) runtime.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Lets the runtime run other tasks until `alive_tasks()` is `n`; false if it never is.
async fn settle_to(n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive_tasks() != n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    alive_tasks() == n
}

/// A client connected to `server` that has sent `request` and whose connection the server has
/// taken (its connection task is running: one task more than the accept loop's).
async fn connected(server: &Server, before: usize, request: &[u8]) -> TcpStream {
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(request).await.unwrap();
    assert!(
        settle_to(before + 2).await,
        "the server's accept loop and one connection task: {} tasks, {before} before",
        alive_tasks()
    );
    client
}

/// Reads until the server closes the connection (end of stream, or a reset when it closed with
/// our request unread); panics if it is still open after 10 s.
async fn closed_by_server(client: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let until_closed = async {
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), until_closed)
        .await
        .expect("the server's side of the connection is still open");
}

/// Nothing listens on `addr` and the port is free to take again.
async fn released(addr: std::net::SocketAddr) {
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{addr}");
    TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("{addr} is still taken: {e}"));
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_a_hanging_server_closes_its_port_and_ends_the_connection_it_holds() {
    let before = alive_tasks();
    let server = fault_servers::hanging().await;
    let addr = server.addr;
    let mut client = connected(&server, before, GET).await;
    drop(server);
    closed_by_server(&mut client).await;
    assert!(settle_to(before).await, "{} tasks left, {before} before", alive_tasks());
    released(addr).await;
}

#[tokio::test(flavor = "current_thread")]
async fn stopping_a_dripping_server_returns_once_its_port_and_connections_are_gone() {
    let before = alive_tasks();
    let server = fault_servers::dripping(Duration::from_millis(10)).await;
    let addr = server.addr;
    let mut client = connected(&server, before, GET).await;
    server.stop().await;
    assert_eq!(alive_tasks(), before, "tasks left once stop returned");
    released(addr).await;
    closed_by_server(&mut client).await;
}

#[tokio::test(flavor = "current_thread")]
async fn stopping_an_https_server_ends_a_connection_waiting_in_its_handshake() {
    let before = alive_tasks();
    let cert = fault_servers::self_signed(&["127.0.0.1"]);
    let server = fault_servers::https(&cert, |_: &fault_servers::Seen<'_>| {
        fault_servers::Reply::new(200, "ok")
    })
    .await;
    let addr = server.addr;
    // A TCP connection that has not started its handshake: the server's task waits on it.
    let mut client = connected(&server, before, b"").await;
    server.stop().await;
    assert_eq!(alive_tasks(), before, "tasks left once stop returned");
    released(addr).await;
    closed_by_server(&mut client).await;
}

#[tokio::test(flavor = "current_thread")]
async fn stopping_the_dns_server_releases_its_udp_and_tcp_port_and_ends_tcp_connections() {
    let before = alive_tasks();
    let server = fault_servers::dns(vec![("a.example", DnsAnswer::NoData)]).await;
    let addr = server.addr;
    // A TCP client that sent half a length prefix: its connection task waits for the rest.
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(&[0]).await.unwrap();
    assert!(settle_to(before + 2).await, "{} tasks, {before} before", alive_tasks());
    server.stop().await;
    assert_eq!(alive_tasks(), before, "tasks left once stop returned");
    released(addr).await;
    tokio::net::UdpSocket::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("UDP {addr} is still taken: {e}"));
    closed_by_server(&mut client).await;
}
