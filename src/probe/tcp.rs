//! The `tcp` probe: resolve, then connect to the first address that accepts.
//!
//! A name with several addresses is tried in the resolver's order; each attempt gets an equal
//! share of the time left, so one black-holed address cannot eat the budget of the others.
//! The address that worked is recorded; if none did, the first address's error is the reason
//! (the resolver's preferred address: a later IPv6 `unreachable` must not hide an IPv4 drop).

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{resolve, Deadline, Phase, ProbeContext, ProbeError, Trace};
use crate::target::{Endpoint, Target};

/// Probes a target with resolve + connect.
pub async fn probe(
    target: &Target,
    ctx: &ProbeContext,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<(), ProbeError> {
    connect(ctx, &target.endpoint, trace, deadline).await.map(drop)
}

/// Resolves and connects; used by every kind that needs a connection.
pub async fn connect(
    ctx: &ProbeContext,
    endpoint: &Endpoint,
    trace: &mut Trace,
    deadline: Deadline,
) -> Result<TcpStream, ProbeError> {
    let addrs = resolve::endpoint_addrs(ctx, endpoint, trace, deadline).await?;
    let start = Instant::now();
    let result = connect_first(&addrs, trace, deadline).await;
    trace.add(Phase::Connect, start.elapsed());
    result
}

async fn connect_first(addrs: &[SocketAddr], trace: &mut Trace, deadline: Deadline) -> Result<TcpStream, ProbeError> {
    let mut first: Option<(SocketAddr, ProbeError)> = None;
    for (i, addr) in addrs.iter().enumerate() {
        let left = addrs.len() - i;
        let share = deadline.remaining() / left as u32;
        let error = match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                trace.address = Some(*addr);
                return Ok(stream);
            }
            Ok(Err(source)) => ProbeError::Connect { addr: *addr, source },
            Err(_) => ProbeError::Timeout {
                phase: Phase::Connect,
                after: deadline.budget,
            },
        };
        first.get_or_insert((*addr, error));
    }
    let Some((addr, error)) = first else {
        // Resolution never yields an empty list, but an empty list is not a reason to panic.
        return Err(ProbeError::Timeout {
            phase: Phase::Connect,
            after: deadline.budget,
        });
    };
    trace.address = Some(addr);
    Err(error)
}
