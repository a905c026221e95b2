//! Bounded fan-out by rendezvous (highest-random-weight) hashing, decided per probed peer.
//!
//! For each peer, every member of the mesh gets a score from a hash of (peer, member); the k
//! best-scoring members other than the peer probe it. Every agent computes this alone from the
//! same peer list, with no coordination, and each peer ends up probed by exactly k others (when
//! the agents' lists agree), so series grow as N·k. A node that joins or leaves changes only the
//! choices where it is, or becomes, one of a peer's k best: the rest stay as they were, so
//! series do not churn with the autoscaler.

/// A score for `member` probing `peer`: FNV-1a over both names, then a 64-bit finaliser. Spelled
/// out rather than `DefaultHasher`, whose output Rust does not promise to keep across versions:
/// two agents built by different compilers must still agree.
pub fn score(peer: &str, member: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in peer.bytes().chain(std::iter::once(0xff)).chain(member.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser: FNV alone leaves the high bits of similar names close.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The peers that `me` probes, out of `members` (which may or may not hold `me`): every peer
/// when `k` is 0, else those for which `me` is among the `k` best-scoring other members.
/// Returned in the order of `members`.
pub fn choose<'a>(me: &str, members: &'a [String], k: usize) -> Vec<&'a String> {
    let peers = members.iter().filter(|m| m.as_str() != me);
    if k == 0 {
        return peers.collect();
    }
    peers
        .filter(|peer| {
            let mine = (score(peer, me), me);
            // Members that beat me for this peer (ties broken by name, so every agent agrees).
            let better = members
                .iter()
                .filter(|m| m.as_str() != me && m != peer)
                .filter(|m| (score(peer, m), m.as_str()) > mine)
                .take(k)
                .count();
            better < k
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn members(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.0.{}.{}:9807", i / 200, i % 200 + 1))
            .collect()
    }

    /// peer → the members that probe it.
    fn probers(all: &[String], k: usize) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = all.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
        for me in all {
            for p in choose(me, all, k) {
                out.get_mut(p).unwrap().insert(me.clone());
            }
        }
        out
    }

    #[test]
    fn every_peer_is_probed_by_exactly_k_others_and_never_by_itself() {
        for (n, k) in [(10, 5), (100, 5), (300, 3), (4, 5)] {
            let all = members(n);
            for (peer, by) in probers(&all, k) {
                assert_eq!(by.len(), k.min(n - 1), "{peer} in {n} with k={k}");
                assert!(!by.contains(&peer));
            }
        }
    }

    #[test]
    fn each_node_probes_about_k_peers() {
        let all = members(400);
        let counts: Vec<usize> = all.iter().map(|me| choose(me, &all, 5).len()).collect();
        let total: usize = counts.iter().sum();
        assert_eq!(total, 2000, "N·k probes in all");
        let max = *counts.iter().max().unwrap();
        assert!(max <= 20, "no node carries a large share: max {max}");
    }

    #[test]
    fn zero_means_every_peer_but_itself() {
        let all = members(7);
        assert_eq!(choose(&all[3], &all, 0).len(), 6);
        assert!(!choose(&all[3], &all, 0).contains(&&all[3]));
        // An agent not (yet) in the list still probes everyone.
        assert_eq!(choose("10.9.9.9:9807", &all, 0).len(), 7);
    }

    #[test]
    fn a_node_leaving_moves_only_the_choices_it_was_part_of() {
        let all = members(60);
        let before = probers(&all, 5);
        let gone = all[17].clone();
        let rest: Vec<String> = all.iter().filter(|m| **m != gone).cloned().collect();
        let after = probers(&rest, 5);
        for (peer, by) in &after {
            let was = &before[peer];
            if was.contains(&gone) {
                // It lost one prober and gained one.
                assert_eq!(was.difference(by).collect::<Vec<_>>(), vec![&gone]);
                assert_eq!(by.difference(was).count(), 1);
            } else {
                assert_eq!(was, by, "{peer}'s probers did not move");
            }
        }
    }

    #[test]
    fn a_node_joining_moves_at_most_one_prober_per_peer() {
        let all = members(60);
        let before = probers(&all, 5);
        let mut more = all.clone();
        more.push("10.9.9.9:9807".into());
        let after = probers(&more, 5);
        let moved = before.iter().filter(|(p, by)| after[*p] != **by).count();
        for (peer, by) in &before {
            assert!(by.difference(&after[peer]).count() <= 1);
        }
        assert!(moved <= 15, "about k/N of the peers take the new node: {moved}");
    }
}
