use super::*;
use crate::ids::{ServerIdx, ServiceIdx};

fn k(i: u32) -> Key4 {
    Key4::new(
        Ipv4Addr::from(0x0a00_0000 + i),
        Ipv4Addr::new(192, 0, 2, 1),
        1000 + (i % 5000) as u16,
        80,
        6,
    )
}

fn cfg(capacity: usize) -> ConnTableConfig {
    ConnTableConfig {
        capacity,
        hash_seed: 7,
        ..ConnTableConfig::default()
    }
}

fn nc(server: u16) -> NewConn {
    NewConn {
        service: ServiceIdx(0),
        server: ServerIdx(server),
        local: None,
        user_flags: 0,
    }
}

#[test]
fn entry_sizes() {
    assert_eq!(core::mem::size_of::<Meta>(), 24);
    assert_eq!(core::mem::size_of::<Entry<Key6>>(), 64);
    assert_eq!(core::mem::size_of::<Entry<Key4>>(), 48);
    assert_eq!(core::mem::size_of::<Conn>(), 24);
}

/// `on_packet`'s shortcut for steady states gives what `next` gives.
#[test]
fn steady_states_are_fixed_points() {
    for flags in 0..=255u8 {
        let f = TcpFlags(flags);
        if flags & 0x07 == 0 {
            for dir in [Direction::Original, Direction::Reply] {
                for input_only in [false, true] {
                    assert_eq!(
                        ConnState::Established.next(dir, f, input_only),
                        ConnState::Established
                    );
                }
            }
        }
        assert_eq!(
            ConnState::Udp.next(Direction::Original, f, false),
            ConnState::Udp
        );
    }
}

#[test]
fn tcp_states_nat() {
    use ConnState::*;
    use Direction::*;
    let s = ConnState::initial(6, TcpFlags::SYN);
    assert_eq!(s, SynSent);
    let s = s.next(Reply, TcpFlags::SYN_ACK, false);
    assert_eq!(s, SynRecv);
    let s = s.next(Original, TcpFlags::ACK, false);
    assert_eq!(s, Established);
    let s = s.next(Original, TcpFlags::FIN_ACK, false);
    assert_eq!(s, FinWait);
    let s = s.next(Reply, TcpFlags::FIN_ACK, false);
    assert_eq!(s, LastAck);
    let s = s.next(Original, TcpFlags::ACK, false);
    assert_eq!(s, TimeWait);
    assert_eq!(s.next(Original, TcpFlags::SYN, false), SynSent);
    assert_eq!(Established.next(Reply, TcpFlags::RST, false), Close);
    assert_eq!(Established.next(Reply, TcpFlags::FIN, false), CloseWait);
    assert_eq!(CloseWait.next(Original, TcpFlags::FIN, false), LastAck);
    assert_eq!(LastAck.next(Reply, TcpFlags::ACK, false), TimeWait);
    // Input-only: the client's ACK completes the handshake.
    assert_eq!(SynSent.next(Original, TcpFlags::ACK, true), Established);
    assert_eq!(SynSent.next(Original, TcpFlags::ACK, false), SynSent);
    assert_eq!(ConnState::initial(17, TcpFlags::NONE), Udp);
    assert_eq!(ConnState::initial(6, TcpFlags::ACK), Established);
}

/// A 16-entry table holding one NAT connection to server 3, opened at
/// time 0 by a client packet with `flags`: the table, the forward and
/// reply keys, and the insert.
fn one_nat_conn(flags: TcpFlags) -> (ConnTable4, Key4, Key4, Inserted<Key4>) {
    let mut t = ConnTable4::new(cfg(16), Time::ZERO).unwrap();
    let key = k(1);
    let reply = Key4::new(Ipv4Addr::new(10, 9, 0, 1), key.src, 80, key.src_port, 6);
    let ins = t
        .insert(key, Some(reply), nc(3), flags, Time::ZERO)
        .unwrap();
    (t, key, reply, ins)
}

/// Probes `key`, which must be a reply entry's.
fn probe_reply(t: &mut ConnTable4, key: &Key4) -> ReplyRef {
    let h = t.prefetch(key);
    let Probe::Reply(r) = t.probe(key, h) else {
        panic!("reply key {key:?} not found as a reply");
    };
    r
}

#[test]
fn insert_lookup_reply_remove() {
    let (mut t, key, reply, ins) = one_nat_conn(TcpFlags::SYN);
    assert_eq!(ins.state, ConnState::SynSent);
    assert_eq!(t.entries(), 2);
    assert_eq!(t.len(), 1);
    let h = t.lookup(&key).unwrap();
    assert!(!h.is_reply());
    let r = t.lookup(&reply).unwrap();
    assert!(r.is_reply());
    assert_eq!(t.get(&r).unwrap().server(), ServerIdx(3));
    assert_eq!(t.get_with_key(&r).unwrap().0, &key);
    assert_eq!(
        t.on_packet(&r, TcpFlags::SYN_ACK, Time::from_secs(1)),
        Some(ConnState::SynRecv)
    );
    assert!(matches!(
        t.insert(key, None, nc(0), TcpFlags::SYN, Time::ZERO),
        Err(InsertError::Exists(_))
    ));
    let other = k(2);
    assert_eq!(
        t.insert(other, Some(reply), nc(0), TcpFlags::SYN, Time::ZERO)
            .unwrap_err(),
        InsertError::ReplyExists
    );
    let closed = t.remove(&h).unwrap();
    assert_eq!(closed.reason, CloseReason::Removed);
    assert_eq!(t.entries(), 0);
    assert!(t.lookup(&key).is_none());
    assert!(t.lookup(&reply).is_none());
    assert_eq!(t.get(&h), None);
    assert_eq!(t.on_packet(&h, TcpFlags::ACK, Time::ZERO), None);
    assert_eq!(t.stats.stale_handles, 1);
}

#[test]
fn expiry_and_lazy_rearm() {
    let mut t = ConnTable4::new(cfg(4), Time::ZERO).unwrap();
    let ins = t
        .insert(k(1), None, nc(0), TcpFlags::NONE, Time::ZERO)
        .unwrap();
    assert_eq!(ins.state, ConnState::Established);
    let mut out = Vec::new();
    // Refresh at 500 s: the 900 s timer fires early and is re-armed.
    assert_eq!(
        t.on_packet(&ins.handle, TcpFlags::ACK, Time::from_secs(500)),
        Some(ConnState::Established)
    );
    assert_eq!(t.get(&ins.handle).unwrap().expires(), Time::from_secs(1400));
    assert_eq!(t.expire(Time::from_secs(901), 10, &mut out), 0);
    assert_eq!(t.stats.lazy_rearms, 1);
    assert_eq!(t.expire(Time::from_millis(1_399_999), 10, &mut out), 0);
    assert_eq!(t.expire(Time::from_secs(1400), 10, &mut out), 1);
    assert_eq!(out[0].reason, CloseReason::Expired);
    assert!(t.is_empty());
}

#[test]
fn rst_shortens_timer() {
    let mut t = ConnTable4::new(cfg(4), Time::ZERO).unwrap();
    let ins = t
        .insert(k(1), None, nc(0), TcpFlags::ACK, Time::ZERO)
        .unwrap();
    t.on_packet(&ins.handle, TcpFlags::RST, Time::from_secs(1));
    assert_eq!(t.stats.eager_rearms, 1);
    let mut out = Vec::new();
    assert_eq!(t.expire(Time::from_millis(10_999), 10, &mut out), 0);
    assert_eq!(t.expire(Time::from_secs(11), 10, &mut out), 1);
}

#[test]
fn full_policies() {
    let mut t = ConnTable4::new(cfg(2), Time::ZERO).unwrap();
    t.insert(k(1), None, nc(0), TcpFlags::SYN, Time::ZERO)
        .unwrap();
    t.insert(k(2), None, nc(0), TcpFlags::ACK, Time::ZERO)
        .unwrap();
    assert_eq!(
        t.insert(k(3), None, nc(0), TcpFlags::SYN, Time::ZERO)
            .unwrap_err(),
        InsertError::Full
    );
    assert_eq!(t.stats.full_drops, 1);
    t.set_full_policy(FullPolicy::EvictOldest);
    let ins = t
        .insert(k(3), None, nc(0), TcpFlags::SYN, Time::from_secs(1))
        .unwrap();
    // The half-open connection (60 s timeout) goes before the established one.
    assert_eq!(ins.evicted[0].unwrap().key, k(1));
    assert_eq!(ins.evicted[0].unwrap().reason, CloseReason::Evicted);
    assert_eq!(t.stats.evictions, 1);
    assert!(t.lookup(&k(2)).is_some());
    assert_eq!(t.len(), 2);
}

/// The prefetch addresses are the buckets' addresses, whatever the key
/// type, once an insert has shown where the bucket array lies.
#[test]
fn prefetch_addresses_are_the_buckets() {
    fn check<K: FlowKey>(t: &ConnTable<K>) {
        let mut full = 0;
        for i in 0..t.table.num_buckets() {
            if let Some(e) = t.table.get_bucket(i) {
                assert_eq!(t.entry_addr(i), e as *const Entry<K> as usize, "bucket {i}");
                full += 1;
            }
        }
        assert_eq!(full, t.len());
    }
    let mut t = ConnTable4::new(cfg(256), Time::ZERO).unwrap();
    assert_eq!(t.base, 0);
    // Before the first insert nothing is prefetched, and nothing found.
    let h = t.prefetch(&k(1));
    assert_eq!(t.probe(&k(1), h), Probe::Miss);
    for i in 0..200 {
        t.insert(k(i), None, nc(0), TcpFlags::ACK, Time::ZERO)
            .unwrap();
    }
    check(&t);
    let mut t6 = ConnTable6::new(cfg(64), Time::ZERO).unwrap();
    for i in 0..40u16 {
        let key = Key6::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i),
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
            1000 + i,
            80,
            6,
        );
        t6.insert(key, None, nc(0), TcpFlags::ACK, Time::ZERO)
            .unwrap();
    }
    check(&t6);
}

/// Probing a reply key gives a reference that `finish` resolves, or
/// not when the connection left the table between the two (the
/// pipeline handles frames between a probe and its use).
#[test]
fn probe_then_finish() {
    let mut t = ConnTable4::new(cfg(64), Time::ZERO).unwrap();
    let reply = |i: u32| {
        Key4::new(
            Ipv4Addr::new(10, 9, 0, i as u8),
            Ipv4Addr::from(i),
            80,
            1,
            6,
        )
    };
    for i in 0..3 {
        t.insert(
            k(i),
            Some(reply(i)),
            nc(i as u16),
            TcpFlags::ACK,
            Time::ZERO,
        )
        .unwrap();
    }
    let fwd = t.lookup(&k(1)).unwrap();
    let h = t.prefetch(&k(1));
    assert_eq!(t.probe(&k(1), h), Probe::Hit(fwd));
    let r = probe_reply(&mut t, &reply(1));
    let got = t.finish(r).unwrap();
    assert!(got.is_reply());
    assert_eq!(t.get(&got).unwrap().server(), ServerIdx(1));
    // The same reference after the connection is gone (the probe
    // counted the self-contained reply entry as a hit: a stale handle).
    t.remove(&fwd).unwrap();
    let (hits, misses, stale) = (t.stats.hits, t.stats.misses, t.stats.stale_handles);
    assert_eq!(t.finish(r), None);
    assert_eq!(
        (t.stats.hits, t.stats.misses, t.stats.stale_handles),
        (hits, misses, stale + 1)
    );
    let h = t.prefetch(&k(7));
    assert_eq!(t.probe(&k(7), h), Probe::Miss);
}

/// An IPv4 reply entry holds what a steady reply needs: the forward
/// key, the connection's state (kept in step) and the expiry its last
/// steady reply set, which the forward entry's timer consults.
#[test]
fn self_contained_replies() {
    let (mut t, key, reply, ins) = one_nat_conn(TcpFlags::ACK);
    let steady = |t: &mut ConnTable4, flags| {
        let r = probe_reply(t, &reply);
        t.steady_reply(&r, flags)
    };
    let s = steady(&mut t, TcpFlags::ACK).unwrap();
    assert_eq!(
        (s.key, s.service, s.server, s.full_nat),
        (key, ServiceIdx(0), ServerIdx(3), false)
    );
    assert_eq!(steady(&mut t, TcpFlags::FIN_ACK), None);
    // A steady reply at 100 s moves the expiry in the reply entry only.
    t.on_reply_at(s.at, Time::from_secs(100));
    assert_eq!(t.get(&ins.handle).unwrap().expires(), Time::from_secs(900));
    assert_eq!(t.expires(&ins.handle), Some(Time::from_secs(1000)));
    assert_eq!(t.iter().next().unwrap().1.expires(), Time::from_secs(1000));
    // The general path's steady reply does the same.
    let r = t.lookup(&reply).unwrap();
    assert_eq!(
        t.on_packet(&r, TcpFlags::ACK, Time::from_secs(200)),
        Some(ConnState::Established)
    );
    assert_eq!(t.expires(&ins.handle), Some(Time::from_secs(1100)));
    // The forward timer fires at 900 s and finds the reply's expiry.
    let mut out = Vec::new();
    assert_eq!(t.expire(Time::from_secs(901), 10, &mut out), 0);
    assert_eq!(t.stats.lazy_rearms, 1);
    // The client's FIN at 950 s: the reply entry follows the state, and
    // its later expiry (1100 s) gives way to the FIN_WAIT timeout.
    assert_eq!(
        t.on_packet(&ins.handle, TcpFlags::FIN_ACK, Time::from_secs(950)),
        Some(ConnState::FinWait)
    );
    assert_eq!(steady(&mut t, TcpFlags::ACK), None);
    assert_eq!(t.expires(&ins.handle), Some(Time::from_secs(1070)));
    assert_eq!(t.expire(Time::from_millis(1_069_900), 10, &mut out), 0);
    assert_eq!(t.expire(Time::from_secs(1070), 10, &mut out), 1);
    assert!(t.is_empty());
}

#[test]
fn new_timeouts_apply_to_the_table() {
    // An established NAT connection whose last packet is a steady reply
    // at 100 s (expiry 1000 s), and a half-open one from 0 s (60 s).
    let (mut t, key, reply, ins) = one_nat_conn(TcpFlags::ACK);
    let s = probe_reply(&mut t, &reply);
    let s = t.steady_reply(&s, TcpFlags::ACK).unwrap();
    t.on_reply_at(s.at, Time::from_secs(100));
    let half = t
        .insert(k(2), None, nc(1), TcpFlags::SYN, Time::ZERO)
        .unwrap();
    assert_eq!(t.set_timeouts(Timeouts::default()), 0, "nothing changed");
    // Established shortened to 300 s, SYN lengthened to 600 s.
    let shorter = Timeouts {
        established: Duration::from_secs(300),
        syn_sent: Duration::from_secs(600),
        ..Timeouts::default()
    };
    assert_eq!(t.set_timeouts(shorter), 1, "one timer moved earlier");
    assert_eq!(t.stats.eager_rearms, 1);
    // Each expiry is the last packet plus the new timeout: the reply's
    // (100 + 300) for the first, the SYN's (0 + 600) for the second.
    assert_eq!(t.expires(&ins.handle), Some(Time::from_secs(400)));
    assert_eq!(t.expires(&half.handle), Some(Time::from_secs(600)));
    let mut out = Vec::new();
    // The first's timer fires at 300 s (its forward expiry) and re-arms
    // for the reply's; the second's old timer (60 s) re-arms for 600 s.
    assert_eq!(t.expire(Time::from_secs(301), 10, &mut out), 0);
    assert_eq!(t.stats.lazy_rearms, 2);
    assert_eq!(t.expire(Time::from_secs(400), 10, &mut out), 1);
    assert_eq!(out[0].key, key);
    assert_eq!(t.expire(Time::from_millis(599_900), 10, &mut out), 0);
    assert_eq!(t.expire(Time::from_secs(600), 10, &mut out), 1);
    assert!(t.is_empty());
}

#[test]
fn burst_lookup() {
    let mut t = ConnTable4::new(cfg(128), Time::ZERO).unwrap();
    for i in 0..64 {
        t.insert(k(i), None, nc(i as u16), TcpFlags::ACK, Time::ZERO)
            .unwrap();
    }
    let keys: Vec<Key4> = (0..80).map(k).collect();
    let mut out = vec![None; 80];
    t.lookup_burst(&keys, &mut out).unwrap();
    for (i, o) in out.iter().enumerate() {
        assert_eq!(o.is_some(), i < 64, "{i}");
        if let Some(h) = o {
            assert_eq!(t.get(h).unwrap().server(), ServerIdx(i as u16));
        }
    }
    assert_eq!(t.stats.hits, 64);
    assert_eq!(t.stats.misses, 16);
    assert!(t.lookup_burst(&keys, &mut out[..3]).is_err());
}

/// Bursts mixing forward keys, reply keys and absent keys (more than
/// [`BURST`] of them) find what one-by-one lookups find, in a table
/// whose entries collide on purpose (a small table, many keys).
#[test]
fn burst_lookup_with_replies_matches_single_lookups() {
    let mut t = ConnTable4::new(cfg(512), Time::ZERO).unwrap();
    let reply = |i: u32| {
        Key4::new(
            Ipv4Addr::new(10, 9, (i >> 8) as u8, i as u8),
            Ipv4Addr::from(0x0a00_0000 + i),
            80,
            1000 + (i % 5000) as u16,
            6,
        )
    };
    for i in 0..200 {
        let r = (i % 3 != 0).then(|| reply(i));
        t.insert(k(i), r, nc(i as u16), TcpFlags::ACK, Time::ZERO)
            .unwrap();
    }
    // Remove some, so deleted slots sit in probe sequences.
    for i in (0..200).step_by(7) {
        let h = t.lookup(&k(i)).unwrap();
        t.remove(&h).unwrap();
    }
    let mut keys = Vec::new();
    for i in 0..260 {
        keys.push(k(i));
        keys.push(reply(i));
    }
    let mut out = vec![None; keys.len()];
    t.lookup_burst(&keys, &mut out).unwrap();
    for (key, got) in keys.iter().zip(&out) {
        assert_eq!(*got, t.lookup(key), "{key:?}");
        if let Some(h) = got {
            assert_eq!(h.is_reply(), key.src.octets()[1] == 9);
            assert!(t.get(h).is_some());
        }
    }
}
