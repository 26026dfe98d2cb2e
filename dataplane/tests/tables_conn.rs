//! Connection table: a model-based property test (never above capacity, never
//! loses a connection that has neither expired nor been reported evicted,
//! expiry at most one tick late), IPv6 and full-NAT reply entries, burst
//! lookups, reload remapping and SYN-flood eviction.

use core::time::Duration;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tack_dataplane::Time;
use tack_dataplane::conn::{
    CloseReason, ConnState, ConnTable4, ConnTable6, ConnTableConfig, FlowKey, FullPolicy,
    InsertError, Key4, Key6, NewConn, TcpFlags, Timeouts,
};
use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::{Config, ForwardMode, LocalPool, Protocol, RealServer, Service};

const TICK: Duration = Duration::from_millis(100);

fn fwd(i: u32) -> Key4 {
    Key4::new(
        Ipv4Addr::from(0x0b00_0000 + i),
        Ipv4Addr::new(192, 0, 2, 1),
        10_000 + i as u16,
        80,
        if i.is_multiple_of(3) { 17 } else { 6 },
    )
}

fn reply(i: u32) -> Key4 {
    // Full NAT: server → local address, local port unique per flow.
    Key4::new(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 9, 0, 1),
        80,
        20_000 + i as u16,
        fwd(i).proto,
    )
}

fn nc(i: u32, with_reply: bool) -> NewConn {
    NewConn {
        service: ServiceIdx(0),
        server: ServerIdx((i % 7) as u16),
        local: with_reply.then_some((0, 20_000 + i as u16)),
        user_flags: 0,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u32, bool, u8),
    Packet(u32, bool, u8),
    Advance(u64),
    Expire(usize),
    Remove(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let flags = prop_oneof![
        Just(TcpFlags::SYN.0),
        Just(TcpFlags::ACK.0),
        Just(TcpFlags::SYN_ACK.0),
        Just(TcpFlags::FIN_ACK.0),
        Just(TcpFlags::RST.0),
    ];
    prop_oneof![
        5 => (0u32..48, any::<bool>(), flags.clone()).prop_map(|(i, r, f)| Op::Insert(i, r, f)),
        4 => (0u32..48, any::<bool>(), flags).prop_map(|(i, r, f)| Op::Packet(i, r, f)),
        2 => (0u64..200_000).prop_map(Op::Advance),
        2 => (0usize..8).prop_map(Op::Expire),
        1 => (0u32..48).prop_map(Op::Remove),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Model {
    expires: u64,
    state: ConnState,
    server: ServerIdx,
    with_reply: bool,
}

fn short_timeouts() -> Timeouts {
    Timeouts {
        syn_sent: Duration::from_secs(5),
        syn_recv: Duration::from_secs(5),
        established: Duration::from_secs(60),
        fin_wait: Duration::from_secs(10),
        close_wait: Duration::from_secs(10),
        last_ack: Duration::from_secs(3),
        time_wait: Duration::from_secs(10),
        close: Duration::from_secs(1),
        udp: Duration::from_secs(20),
    }
}

fn run(capacity: usize, policy: FullPolicy, ops: &[Op]) -> Result<(), TestCaseError> {
    let timeouts = short_timeouts();
    let mut t = ConnTable4::new(
        ConnTableConfig {
            capacity,
            timeouts,
            full_policy: policy,
            tick: TICK,
            hash_seed: 42,
        },
        Time::ZERO,
    )
    .unwrap();
    let mut model: HashMap<u32, Model> = HashMap::new();
    let entries = |m: &HashMap<u32, Model>| -> usize {
        m.values().map(|c| 1 + usize::from(c.with_reply)).sum()
    };
    let mut now = 0u64;
    let mut out = Vec::new();
    for op in ops {
        match *op {
            Op::Insert(i, with_reply, f) => {
                let r = t.insert(
                    fwd(i),
                    with_reply.then(|| reply(i)),
                    nc(i, with_reply),
                    TcpFlags(f),
                    Time(now),
                );
                match r {
                    Ok(ins) => {
                        prop_assert!(!model.contains_key(&i));
                        for c in ins.evicted.iter().flatten() {
                            prop_assert_eq!(policy, FullPolicy::EvictOldest);
                            let idx = c.key.src_port as u32 - 10_000;
                            let m = model.remove(&idx);
                            prop_assert!(m.is_some(), "evicted an unknown connection");
                            if c.reason == CloseReason::Expired {
                                prop_assert!(m.unwrap().expires <= now);
                            } else {
                                prop_assert_eq!(c.reason, CloseReason::Evicted);
                            }
                        }
                        let state = ConnState::initial(fwd(i).proto, TcpFlags(f));
                        prop_assert_eq!(ins.state, state);
                        model.insert(
                            i,
                            Model {
                                expires: now + timeouts.get(state).as_nanos() as u64,
                                state,
                                server: ServerIdx((i % 7) as u16),
                                with_reply,
                            },
                        );
                    }
                    Err(InsertError::Exists(_)) => prop_assert!(model.contains_key(&i)),
                    Err(InsertError::ReplyExists) => {
                        // Only possible if the same index holds the reply key already.
                        prop_assert!(model.get(&i).is_some_and(|m| m.with_reply));
                    }
                    Err(InsertError::Full) => {
                        prop_assert!(!model.contains_key(&i));
                        let need = 1 + usize::from(with_reply);
                        if policy == FullPolicy::Drop {
                            prop_assert!(entries(&model) + need > capacity, "refused with room");
                        }
                    }
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
            }
            Op::Packet(i, from_server, f) => {
                let key = if from_server { reply(i) } else { fwd(i) };
                let h = t.lookup(&key);
                let expected = model.get(&i).is_some_and(|m| !from_server || m.with_reply);
                prop_assert_eq!(h.is_some(), expected, "lookup of {:?}", key);
                if let Some(h) = h {
                    prop_assert_eq!(h.is_reply(), from_server);
                    let m = model.get_mut(&i).unwrap();
                    let c = t.get(&h).unwrap();
                    prop_assert_eq!(c.server(), m.server);
                    let st = t.on_packet(&h, TcpFlags(f), Time(now)).unwrap();
                    let expect = if fwd(i).proto == 6 {
                        m.state.next(h.direction(), TcpFlags(f), !m.with_reply)
                    } else {
                        ConnState::Udp
                    };
                    prop_assert_eq!(st, expect);
                    m.state = st;
                    m.expires = now + timeouts.get(st).as_nanos() as u64;
                }
            }
            Op::Advance(ms) => now += ms * 1_000_000,
            Op::Expire(budget) => {
                out.clear();
                let budget = if budget == 0 { usize::MAX } else { budget };
                t.expire(Time(now), budget, &mut out);
                for c in &out {
                    let idx = c.key.src_port as u32 - 10_000;
                    let m = model.remove(&idx);
                    prop_assert!(m.is_some());
                    prop_assert!(m.unwrap().expires <= now, "expired early");
                    prop_assert_eq!(c.reason, CloseReason::Expired);
                }
                if budget == usize::MAX {
                    for m in model.values() {
                        prop_assert!(m.expires + TICK.as_nanos() as u64 > now, "expired late");
                    }
                }
            }
            Op::Remove(i) => {
                if let Some(h) = t.lookup(&fwd(i)) {
                    let c = t.remove(&h).unwrap();
                    prop_assert_eq!(c.reason, CloseReason::Removed);
                    prop_assert!(model.remove(&i).is_some());
                } else {
                    prop_assert!(!model.contains_key(&i));
                }
            }
        }
        // Invariants after every operation.
        prop_assert!(t.entries() <= capacity);
        prop_assert_eq!(t.entries(), entries(&model));
        prop_assert_eq!(t.len(), model.len());
        for (&i, m) in &model {
            let h = t.lookup(&fwd(i));
            prop_assert!(h.is_some(), "lost connection {}", i);
            if m.with_reply {
                prop_assert!(t.lookup(&reply(i)).is_some(), "lost reply entry {}", i);
            }
            prop_assert_eq!(t.expires(&h.unwrap()), Some(Time(m.expires)));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn model_drop_policy(capacity in 1usize..24, ops in proptest::collection::vec(op(), 1..200)) {
        run(capacity, FullPolicy::Drop, &ops)?;
    }

    #[test]
    fn model_evict_policy(capacity in 2usize..24, ops in proptest::collection::vec(op(), 1..200)) {
        run(capacity, FullPolicy::EvictOldest, &ops)?;
    }
}

#[test]
fn ipv6_full_nat_both_directions() {
    let mut t = ConnTable6::new(
        ConnTableConfig {
            capacity: 8,
            ..ConnTableConfig::default()
        },
        Time::ZERO,
    )
    .unwrap();
    let client: Ipv6Addr = "2001:db8:1::5".parse().unwrap();
    let vip: Ipv6Addr = "2001:db8::80".parse().unwrap();
    let server: Ipv6Addr = "2001:db8:2::1".parse().unwrap();
    let local: Ipv6Addr = "2001:db8:3::1".parse().unwrap();
    let k = Key6::new(client, vip, 51_000, 443, 6);
    let r = Key6::new(server, local, 8443, 33_333, 6);
    let ins = t
        .insert(
            k,
            Some(r),
            NewConn {
                service: ServiceIdx(2),
                server: ServerIdx(1),
                local: Some((0, 33_333)),
                user_flags: 5,
            },
            TcpFlags::SYN,
            Time::ZERO,
        )
        .unwrap();
    assert_eq!(t.entries(), 2);
    let back = t.lookup(&r).unwrap();
    assert!(back.is_reply());
    assert_eq!(back.id(), ins.handle.id());
    let (fk, c) = t.get_with_key(&back).unwrap();
    assert_eq!(fk.src_addr(), std::net::IpAddr::V6(client));
    assert_eq!(c.local(), Some((0, 33_333)));
    assert_eq!(c.user_flags, 5);
    t.get_mut(&back).unwrap().user_flags = 9;
    assert_eq!(t.get(&ins.handle).unwrap().user_flags, 9);
    assert_eq!(
        t.on_packet(&back, TcpFlags::SYN_ACK, Time::ZERO),
        Some(ConnState::SynRecv)
    );
    let h = t.lookup(&k).unwrap();
    assert_eq!(
        t.on_packet(&h, TcpFlags::ACK, Time::ZERO),
        Some(ConnState::Established)
    );
    assert_eq!(t.iter().count(), 1);
    let mut out = Vec::new();
    assert_eq!(t.flush(&mut out), 1);
    assert_eq!(out[0].reason, CloseReason::Flushed);
    assert_eq!(t.entries(), 0);
}

/// An IPv4 table with room for `n` connections with reply entries.
fn table_for(n: u32) -> ConnTable4 {
    ConnTable4::new(
        ConnTableConfig {
            capacity: 2 * n as usize,
            ..ConnTableConfig::default()
        },
        Time::ZERO,
    )
    .unwrap()
}

#[test]
fn burst_lookup_at_scale() {
    let n = 50_000u32;
    let mut t = table_for(n);
    let key = |i: u32| {
        Key4::new(
            Ipv4Addr::from(0x0c00_0000 + i * 7),
            Ipv4Addr::new(192, 0, 2, 1),
            (i % 50_000) as u16 + 1024,
            443,
            6,
        )
    };
    for i in 0..n {
        t.insert(
            key(i),
            i.is_multiple_of(2).then(|| {
                Key4::new(
                    Ipv4Addr::new(10, 0, 0, 1),
                    key(i).src,
                    443,
                    key(i).src_port,
                    6,
                )
            }),
            NewConn {
                service: ServiceIdx(0),
                server: ServerIdx((i % 100) as u16),
                local: None,
                user_flags: 0,
            },
            TcpFlags::ACK,
            Time::ZERO,
        )
        .unwrap();
    }
    assert_eq!(t.len(), n as usize);
    let mut keys = [key(0); 32];
    let mut out = [None; 32];
    for base in (0..n + 1000).step_by(32) {
        for (j, k) in keys.iter_mut().enumerate() {
            *k = key(base + j as u32);
        }
        t.lookup_burst(&keys, &mut out).unwrap();
        for (j, o) in out.iter().enumerate() {
            let i = base + j as u32;
            assert_eq!(o.is_some(), i < n);
            if let Some(h) = o {
                assert_eq!(t.get(h).unwrap().server(), ServerIdx((i % 100) as u16));
            }
        }
    }
}

#[test]
fn syn_flood_evicts_half_open_before_established() {
    let mut t = ConnTable4::new(
        ConnTableConfig {
            capacity: 100,
            full_policy: FullPolicy::EvictOldest,
            ..ConnTableConfig::default()
        },
        Time::ZERO,
    )
    .unwrap();
    for i in 0..50 {
        t.insert(
            fwd(i * 3 + 1),
            None,
            nc(i, false),
            TcpFlags::ACK,
            Time::ZERO,
        )
        .unwrap();
    }
    // A flood of SYNs from spoofed sources.
    let flood = |i: u32| {
        Key4::new(
            Ipv4Addr::from(0x6400_0000 + i),
            Ipv4Addr::new(192, 0, 2, 1),
            1,
            80,
            6,
        )
    };
    for i in 0..10_000 {
        let ins = t
            .insert(
                flood(i),
                None,
                nc(0, false),
                TcpFlags::SYN,
                Time::from_millis(u64::from(i)),
            )
            .unwrap();
        for c in ins.evicted.iter().flatten() {
            assert_eq!(
                c.conn.state(),
                ConnState::SynSent,
                "an established flow was evicted"
            );
        }
    }
    assert_eq!(t.len(), 100);
    for i in 0..50 {
        assert!(t.lookup(&fwd(i * 3 + 1)).is_some());
    }
    assert!(t.stats.evictions >= 9_900);
}

#[test]
fn reload_remaps_and_removes() {
    let svc = |servers: &[u8], locals: &[u8]| {
        let mut s = Service::new("192.0.2.1".parse().unwrap(), Protocol::Tcp, Some(80));
        s.mode = ForwardMode::FullNat;
        s.servers = servers
            .iter()
            .map(|&o| RealServer::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, o))))
            .collect();
        s.local_pool = Some(LocalPool {
            addrs: locals
                .iter()
                .map(|&o| std::net::IpAddr::V4(Ipv4Addr::new(10, 9, 0, o)))
                .collect(),
            port_min: 1024,
            port_max: 65535,
            peer_addrs: Vec::new(),
        });
        s
    };
    let old = Config::new(vec![svc(&[1, 2, 3], &[1, 2])]).unwrap();
    let other = Service::new("192.0.2.2".parse().unwrap(), Protocol::Udp, Some(53));
    // Server .1 and local .1 removed; the service moves to index 1.
    let new = Config::new(vec![other, svc(&[3, 2], &[2])]).unwrap();
    let map = Config::reload_map(&old, &new);
    let mut t = ConnTable4::new(
        ConnTableConfig {
            capacity: 64,
            ..ConnTableConfig::default()
        },
        Time::ZERO,
    )
    .unwrap();
    let cases = [
        (0u16, 0u16, false),
        (1, 1, true),
        (2, 1, true),
        (2, 0, false),
        (1, 0, false),
    ];
    for (i, &(server, local, _)) in cases.iter().enumerate() {
        let i = i as u32;
        t.insert(
            fwd(i + 1),
            Some(reply(i + 1)),
            NewConn {
                service: ServiceIdx(0),
                server: ServerIdx(server),
                local: Some((local, 20_000 + i as u16)),
                user_flags: 0,
            },
            TcpFlags::ACK,
            Time::ZERO,
        )
        .unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(t.apply_reload(&map, &mut out), 3);
    assert!(out.iter().all(|c| c.reason == CloseReason::Reload));
    for (i, &(server, _, kept)) in cases.iter().enumerate() {
        let h = t.lookup(&fwd(i as u32 + 1));
        assert_eq!(h.is_some(), kept, "case {i}");
        if let Some(h) = h {
            let c = t.get(&h).unwrap();
            assert_eq!(c.service(), ServiceIdx(1));
            // Old server .2 (index 1) is index 1; old .3 (index 2) is index 0.
            assert_eq!(c.server(), ServerIdx(if server == 1 { 1 } else { 0 }));
            assert_eq!(c.local().unwrap().0, 0);
            assert!(t.lookup(&reply(i as u32 + 1)).unwrap().is_reply());
        }
    }
    assert_eq!(t.stats.reload_removed, 3);
}

#[test]
fn bad_configuration_and_calls_are_errors() {
    assert!(
        ConnTable4::new(
            ConnTableConfig {
                capacity: 0,
                ..ConnTableConfig::default()
            },
            Time::ZERO
        )
        .is_err()
    );
    assert!(
        ConnTable4::new(
            ConnTableConfig {
                tick: Duration::ZERO,
                ..ConnTableConfig::default()
            },
            Time::ZERO
        )
        .is_err()
    );
    let mut t = ConnTable4::new(
        ConnTableConfig {
            capacity: 1,
            ..ConnTableConfig::default()
        },
        Time::ZERO,
    )
    .unwrap();
    assert_eq!(
        t.insert(fwd(1), Some(fwd(1)), nc(1, true), TcpFlags::SYN, Time::ZERO)
            .unwrap_err(),
        InsertError::ReplyIsForward
    );
    // A connection needing two entries never fits a one-entry table.
    assert_eq!(
        t.insert(
            fwd(1),
            Some(reply(1)),
            nc(1, true),
            TcpFlags::SYN,
            Time::ZERO
        )
        .unwrap_err(),
        InsertError::Full
    );
    let mut out = [None; 2];
    assert!(t.lookup_burst(&[fwd(1)], &mut out).is_err());
    assert_eq!(t.stats.bad_calls, 1);
}

/// `insert_hashed` with the hashes `prefetch` returned behaves as `insert`;
/// `contains` sees forward and reply keys, at any position in their probe
/// sequence, and forgets them when the connection goes.
#[test]
fn hashed_insert_and_contains() {
    let n = 20_000u32;
    let mut t = table_for(n);
    for i in 0..n {
        let (k, r) = (fwd(i), reply(i));
        assert!(!t.contains(&k, t.hash_key(&k)));
        let (kh, rh) = (t.prefetch(&k), t.prefetch(&r));
        t.insert_hashed(k, kh, Some((r, rh)), nc(i, true), TcpFlags::SYN, Time::ZERO)
            .unwrap();
    }
    for i in 0..n {
        for k in [fwd(i), reply(i)] {
            assert!(t.contains(&k, t.hash_key(&k)), "key {i}");
        }
        assert!(t.lookup(&reply(i)).is_some_and(|h| h.is_reply()));
        let absent = Key4 {
            src_port: 1,
            ..fwd(i)
        };
        assert!(!t.contains(&absent, t.hash_key(&absent)));
    }
    // A reply key already in use is refused, as by `insert`.
    let k = fwd(n + 1);
    let (kh, r) = (t.hash_key(&k), reply(3));
    assert_eq!(
        t.insert_hashed(
            k,
            kh,
            Some((r, t.hash_key(&r))),
            nc(n + 1, true),
            TcpFlags::SYN,
            Time::ZERO
        )
        .map(|_| ()),
        Err(InsertError::ReplyExists)
    );
    assert_eq!(t.stats.reply_conflicts, 1);
    // So is a guessed one, without counting a conflict; the table is unchanged.
    let len = t.len();
    assert_eq!(
        t.insert_hashed_guess(
            k,
            kh,
            Some((r, t.hash_key(&r))),
            nc(n + 1, true),
            TcpFlags::SYN,
            Time::ZERO,
            true
        )
        .map(|_| ()),
        Err(InsertError::ReplyExists)
    );
    assert_eq!((t.stats.reply_conflicts, t.len()), (1, len));
    assert!(!t.contains(&k, kh));
    let h = t.lookup(&fwd(3)).unwrap();
    t.remove(&h).unwrap();
    for k in [fwd(3), reply(3)] {
        assert!(!t.contains(&k, t.hash_key(&k)));
    }
}
