//! The demo's and the tests' loopback fixtures must not be the thing that leaks: every connection
//! they accept is let go once the client has, and the refused port stays refused.

use std::time::{Duration, Instant};

use pathprobe::probe::{ProbeContext, Resolver};

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
    let addr = pathprobe::testbed::refused_port().await;
    // tokio's listener sets SO_REUSEADDR, as most servers do.
    let taken = tokio::net::TcpListener::bind(addr).await;
    assert!(taken.is_err(), "another socket bound {addr}");
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}
