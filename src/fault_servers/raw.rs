//! Servers written byte by byte, for the faults below HTTP: a server that hangs, one that
//! resets, one that speaks another protocol, one that drips its body, and a port that refuses.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{bind, spawn_accept, Server};

/// Accepts and then never answers: reads until the client gives up, then lets the connection go
/// (holding it after the client's FIN left one socket in CLOSE-WAIT per probe, forever).
pub async fn hanging() -> Server {
    spawn_accept(bind("127.0.0.1:0").await, |mut stream| async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
}

/// Accepts, reads the request, then resets the connection (RST, via SO_LINGER 0).
pub async fn resetting() -> Server {
    spawn_accept(bind("127.0.0.1:0").await, |mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream.set_zero_linger();
        drop(stream);
    })
}

/// Answers whatever is sent with `bytes` and closes: a non-HTTP service on the port.
pub async fn speaking(bytes: &'static [u8]) -> Server {
    spawn_accept(bind("127.0.0.1:0").await, move |mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(bytes).await;
        let _ = stream.shutdown().await;
    })
}

/// Sends a valid response head, then drips the body one byte per `every`, forever.
pub async fn dripping(every: std::time::Duration) -> Server {
    spawn_accept(bind("127.0.0.1:0").await, move |mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
        if stream.write_all(head).await.is_err() {
            return;
        }
        loop {
            if stream.write_all(b"1\r\nx\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// A port on which nothing listens, and nothing can: a socket bound to it that never listens
/// (without `SO_REUSEADDR`, so no other socket can bind it), kept for the rest of the process.
/// The kernel answers a SYN to it with a reset. Binding a port and releasing it instead let
/// another process take it before the probe ran.
pub async fn refused_port() -> SocketAddr {
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("binding a loopback port");
    let addr = socket.local_addr().expect("bound");
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
    addr
}
