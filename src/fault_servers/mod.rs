//! Fault servers: loopback targets that fail in one specific way each (hang, reset, speak
//! another protocol, drip, refuse, answer 401/503, present a bad certificate, misanswer DNS).
//! `pathprobe demo` tours them and the tests use them as fixtures; the agent itself never
//! needs them, so they build only with the `demo` feature (on by default).
//!
//! Every server binds `127.0.0.1:0` (or an address given) and runs until its [`Server`] handle
//! is dropped or stopped; the connections it accepted end with it.

mod certs;
mod dns;
mod http;
mod raw;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use certs::{self_signed, self_signed_ca, Issued, TestCa};
pub use dns::{dns, dns_on, DnsAnswer, DnsLog, DnsQuery};
pub use http::{http, http_on, https, https_on, tls_acceptor, Reply, Seen};
pub use raw::{dripping, hanging, refused_port, resetting, speaking};

/// A running fault server. Dropping it ends its accept loop and every connection it holds (a
/// hanging or dripping connection does not outlive it); [`Server::stop`] does the same and
/// waits until they are gone.
pub struct Server {
    /// Where the server listens (for the DNS server: its UDP and TCP port).
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Runs `serve` as the server's one task; it owns the sockets and the connection tasks, and
    /// must return soon after the token is cancelled.
    fn spawn<F, Fut>(addr: SocketAddr, serve: F) -> Server
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(stop.clone()));
        Server {
            addr,
            stop,
            task: Some(task),
        }
    }

    /// Stops the server and returns once its port is closed and every connection it accepted
    /// has ended: for a test that needs the port released, or the client to see the close, now.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Aborting drops the serving task's future, and with it the listener and the `JoinSet`
        // of connections, which aborts each of them.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn bind(addr: &str) -> TcpListener {
    TcpListener::bind(addr).await.expect("binding a loopback port")
}

/// Accepts on `listener` and runs `on_conn` for each connection, as tasks owned by the server.
fn spawn_accept<F, Fut>(listener: TcpListener, on_conn: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().expect("bound");
    Server::spawn(addr, move |stop| async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        conns.spawn(on_conn(stream));
                    }
                    // Out of descriptors, or a connection reset before it was accepted: a
                    // server keeps accepting.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                // Reaps finished connections, so the set holds only live ones.
                Some(_) = conns.join_next() => {}
            }
        }
        drop(listener);
        conns.shutdown().await;
    })
}
