//! All-address mode: resolve once, then probe every address (up to the target's bound) at the
//! same time, each through the same code as the default mode with the name pinned to that
//! address, so one bad backend behind a name shows in its own series.
//!
//! The target's own result fails when any address fails: an operator asks for this mode because
//! every backend matters. Its reason, phases and error are the first failing address's (in the
//! resolver's order), or the first address's when all succeed. Each address gets the whole time
//! left after the lookup, not a share of it: they run in parallel.

use futures_util::future::join_all;
use tokio::time::Instant;

use super::{finish, judge, resolve, run, AddressResult, Deadline, ProbeContext, ProbeResult, Trace};
use crate::target::{Host, Target};

/// Probes every address of the target's name, at most `max`.
pub async fn probe(target: &Target, ctx: &ProbeContext, max: usize) -> ProbeResult {
    let start = Instant::now();
    let deadline = Deadline::after(target.timeout);
    let mut trace = Trace::default();
    let addrs = match resolve::endpoint_addrs(ctx, &target.endpoint, &mut trace, deadline).await {
        Ok(addrs) => addrs,
        Err(e) => return finish(target, trace, start, Err(e)),
    };
    let runs = addrs.into_iter().take(max).map(|addr| {
        let mut ctx = ctx.clone();
        if let Host::Name(name) = &target.endpoint.host {
            ctx.pin = Some((name.clone(), addr.ip()));
        }
        let mut trace = trace.clone();
        async move {
            let outcome = run(target, &ctx, &mut trace, deadline).await;
            (addr, trace, outcome, start.elapsed())
        }
    });
    let runs = join_all(runs).await;
    let addresses: Vec<AddressResult> = runs
        .iter()
        .map(|(address, _, outcome, total)| {
            let (reason, _, error) = judge(outcome);
            AddressResult {
                address: *address,
                reason,
                total: *total,
                error,
            }
        })
        .collect();
    let pick = runs.iter().position(|(_, _, outcome, _)| outcome.is_err()).unwrap_or(0);
    let Some((_, trace, outcome, _)) = runs.into_iter().nth(pick) else {
        // A lookup never succeeds with no address, but that is no reason to panic.
        return finish(target, trace, start, Ok(()));
    };
    let mut result = finish(target, trace, start, outcome);
    result.addresses = addresses;
    result
}
