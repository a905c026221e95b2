//! The agent's HTTP endpoint (`serve::connection`, with its limits) fed any bytes as a client:
//! it answers or closes, never panics, never hangs (the clock is tokio's, paused, so the header
//! and stall timeouts pass at once when nothing else can run).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use pathprobe::serve::{self, Limits, Routes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Echo;

impl Routes for Echo {
    fn respond(&self, path: &str, headers: &http::HeaderMap) -> http::Response<serve::Body> {
        serve::text(200, format!("{path} {}\n", headers.len()))
    }
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let limits = Limits::default();
        let task = tokio::spawn(async move { serve::connection(server, Arc::new(Echo), &limits).await });
        let data = data.to_vec();
        let writer = async move {
            let _ = client.write_all(&data).await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        let out = writer.await;
        task.await.expect("the connection task does not panic");
        if !out.is_empty() {
            // An HTTP/1.0 request is answered in HTTP/1.0 (the first harness run took that for a bug).
            assert!(
                out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 "),
                "{:?}",
                String::from_utf8_lossy(&out[..out.len().min(64)])
            );
        }
    });
});
