//! Loopback servers that attack the prober: they hang, drip, never end, reset mid-handshake, speak
//! garbage, loop redirects, or send heads too large to hold. Each kind knows the target it makes
//! (kind and settings, as inventory YAML) and the reason the agent must report for it.
//!
//! Every connection a server accepts is dropped as soon as the client has gone (or after
//! [`HOLD`] for the one kind that never reads), so the test process's own descriptors stay bounded
//! however long the storm runs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long the never-reading kind keeps a connection it cannot see closed.
pub const HOLD: Duration = Duration::from_secs(10);

/// One way to be hostile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// Reads the request, never answers.
    Hang,
    /// Accepts and never reads (the request sits in the socket buffer).
    NeverRead,
    /// A status line, then one header byte a second.
    DripHead,
    /// A valid head, then one body byte a second.
    DripBody,
    /// A valid head, then a chunked body as fast as it can, forever.
    EndlessBody,
    /// A status line, then headers as fast as it can, forever.
    EndlessHeaders,
    /// A status line of a mebibyte.
    HugeStatusLine,
    /// One header of a mebibyte.
    HugeHeader,
    /// 302 to itself, forever.
    RedirectLoop,
    /// Reads the ClientHello, then resets the connection.
    ResetMidHandshake,
    /// Answers the ClientHello with bytes that are not TLS.
    TlsGarbage,
    /// Reads the ClientHello, never answers.
    TlsStall,
}

impl Hostile {
    pub const ALL: [Hostile; 12] = [
        Hostile::Hang,
        Hostile::NeverRead,
        Hostile::DripHead,
        Hostile::DripBody,
        Hostile::EndlessBody,
        Hostile::EndlessHeaders,
        Hostile::HugeStatusLine,
        Hostile::HugeHeader,
        Hostile::RedirectLoop,
        Hostile::ResetMidHandshake,
        Hostile::TlsGarbage,
        Hostile::TlsStall,
    ];

    /// A short name, used in target names.
    pub fn name(self) -> &'static str {
        match self {
            Hostile::Hang => "hang",
            Hostile::NeverRead => "never-read",
            Hostile::DripHead => "drip-head",
            Hostile::DripBody => "drip-body",
            Hostile::EndlessBody => "endless-body",
            Hostile::EndlessHeaders => "endless-headers",
            Hostile::HugeStatusLine => "huge-status-line",
            Hostile::HugeHeader => "huge-header",
            Hostile::RedirectLoop => "redirect-loop",
            Hostile::ResetMidHandshake => "reset-mid-handshake",
            Hostile::TlsGarbage => "tls-garbage",
            Hostile::TlsStall => "tls-stall",
        }
    }

    /// The reason the agent must report.
    pub fn reason(self) -> &'static str {
        match self {
            Hostile::Hang | Hostile::NeverRead | Hostile::DripHead | Hostile::DripBody => "http_timeout",
            Hostile::EndlessBody => "body_too_large",
            Hostile::EndlessHeaders | Hostile::HugeStatusLine | Hostile::HugeHeader => "http_protocol",
            Hostile::RedirectLoop => "http_status",
            Hostile::ResetMidHandshake => "connection_reset",
            Hostile::TlsGarbage => "tls_handshake",
            Hostile::TlsStall => "tls_timeout",
        }
    }

    /// Whether the probe must run to its timeout (the others fail at once).
    pub fn times_out(self) -> bool {
        self.reason().ends_with("_timeout")
    }

    /// The inventory fields (besides `name`) of a target pointing at `addr`.
    pub fn target_fields(self, addr: SocketAddr) -> String {
        match self {
            Hostile::ResetMidHandshake | Hostile::TlsGarbage | Hostile::TlsStall => {
                format!("kind: tls, address: \"{addr}\", tls: {{ insecure_skip_verify: true }}")
            }
            Hostile::EndlessBody => format!("kind: http, url: \"http://{addr}/\", body_limit: 64KiB"),
            Hostile::RedirectLoop => format!("kind: http, url: \"http://{addr}/loop\", max_redirects: 5"),
            _ => format!("kind: http, url: \"http://{addr}/\""),
        }
    }

    /// Starts a server of this kind on `127.0.0.1:0`.
    pub async fn serve(self) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a loopback port");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(self.attack(stream));
            }
        });
        HostileServer { addr, task }
    }

    async fn attack(self, mut s: TcpStream) {
        let mut buf = vec![0u8; 16 * 1024];
        match self {
            Hostile::NeverRead => {
                tokio::time::sleep(HOLD).await;
            }
            Hostile::Hang | Hostile::TlsStall => {
                until_closed(&mut s, &mut buf).await;
            }
            Hostile::DripHead => {
                let _ = s.read(&mut buf).await;
                if s.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ").await.is_ok() {
                    drip(&mut s, b"a").await;
                }
            }
            Hostile::DripBody => {
                let _ = s.read(&mut buf).await;
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                    .await
                    .is_ok()
                {
                    drip(&mut s, b"x").await;
                }
            }
            Hostile::EndlessBody => {
                let _ = s.read(&mut buf).await;
                let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
                if s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await
                    .is_ok()
                {
                    while s.write_all(chunk.as_bytes()).await.is_ok() {}
                }
            }
            Hostile::EndlessHeaders => {
                let _ = s.read(&mut buf).await;
                // Written 64 KiB at a time: one small write per header would starve the test's
                // own runtime before it troubles the agent.
                let block: String = (0..3000).map(|i| format!("X-Header-{i}: value\r\n")).collect();
                if s.write_all(b"HTTP/1.1 200 OK\r\n").await.is_ok() {
                    while s.write_all(block.as_bytes()).await.is_ok() {}
                }
            }
            Hostile::HugeStatusLine => {
                let _ = s.read(&mut buf).await;
                let line = format!("HTTP/1.1 200 {}\r\n\r\n", "A".repeat(1 << 20));
                let _ = s.write_all(line.as_bytes()).await;
                until_closed(&mut s, &mut buf).await;
            }
            Hostile::HugeHeader => {
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
                    "b".repeat(1 << 20)
                );
                let _ = s.write_all(head.as_bytes()).await;
                until_closed(&mut s, &mut buf).await;
            }
            Hostile::RedirectLoop => {
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                let _ = s.shutdown().await;
                until_closed(&mut s, &mut buf).await;
            }
            Hostile::ResetMidHandshake => {
                let _ = s.read(&mut buf).await;
                let _ = s.set_zero_linger();
            }
            Hostile::TlsGarbage => {
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"SSH-2.0-OpenSSH_9.6 not tls at all\r\n\x00\xff\xfe garbage")
                    .await;
                until_closed(&mut s, &mut buf).await;
            }
        }
    }
}

/// Reads and discards until the peer closes (or resets).
async fn until_closed(s: &mut TcpStream, buf: &mut [u8]) {
    while let Ok(n) = s.read(buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Writes `byte` once a second until the peer has gone.
async fn drip(s: &mut TcpStream, byte: &[u8]) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if s.write_all(byte).await.is_err() {
            return;
        }
    }
}

/// A running hostile server; stops accepting when dropped.
pub struct HostileServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
