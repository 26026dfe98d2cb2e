//! Schedulers: distribution by weight, consistency under server removal,
//! eligibility (drain, weight 0, down), and `None` without eligible servers.

use std::net::{IpAddr, Ipv4Addr};

use tack_dataplane::balance::maglev::Maglev;
use tack_dataplane::balance::{Backend, hrw};
use tack_dataplane::hash;
use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::{Config, Protocol, RealServer, SchedulerKind, ServerState, Service};
use tack_dataplane::sched::{PickKey, SchedState};

fn service(kind: SchedulerKind, weights: &[u16]) -> Service {
    let mut s = Service::new(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        Protocol::Tcp,
        Some(80),
    );
    s.scheduler = kind;
    s.servers = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let mut r = RealServer::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1)));
            r.weight = w;
            r
        })
        .collect();
    s
}

fn cfg(kind: SchedulerKind, weights: &[u16]) -> Config {
    Config::new(vec![service(kind, weights)]).unwrap()
}

fn key(i: u32) -> PickKey {
    PickKey {
        src: IpAddr::V4(Ipv4Addr::from(
            0x0b00_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761)),
        )),
        src_port: 1024 + (i % 60_000) as u16,
        dst_port: 80,
    }
}

/// Shares of `n` picks per server.
fn shares(cfg: &Config, n: u32, hold: bool) -> Vec<f64> {
    let mut st = SchedState::new(cfg);
    let pool = cfg.service(ServiceIdx(0)).unwrap().servers.len();
    let mut counts = vec![0u32; pool];
    for i in 0..n {
        let s = st.pick(cfg, ServiceIdx(0), &key(i)).expect("a server");
        counts[usize::from(s)] += 1;
        if hold {
            st.conn_opened(ServiceIdx(0), s);
        }
    }
    counts
        .iter()
        .map(|&c| f64::from(c) / f64::from(n))
        .collect()
}

fn assert_by_weight(sh: &[f64], weights: &[u16], tol: f64, what: &str) {
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    for (i, (&s, &w)) in sh.iter().zip(weights).enumerate() {
        let expect = f64::from(w) / total;
        assert!(
            (s - expect).abs() <= tol,
            "{what}: server {i} share {s:.4}, expected {expect:.4}"
        );
    }
}

#[test]
fn smooth_wrr_is_nginx_sequence() {
    let c = cfg(SchedulerKind::WeightedRoundRobin, &[5, 1, 1]);
    let mut st = SchedState::new(&c);
    let seq: String = (0..14)
        .map(|i| (b'a' + st.pick(&c, ServiceIdx(0), &key(i)).unwrap().0 as u8) as char)
        .collect();
    assert_eq!(seq, "aabacaaaabacaa");
}

/// Weights summing past the precomputed cycle's limit are scheduled by the
/// current weights instead, with the same sequence; a pool change moves the
/// walk to the new cycle, which keeps exact shares.
#[test]
fn smooth_wrr_long_cycles_and_pool_changes() {
    let big = cfg(SchedulerKind::WeightedRoundRobin, &[3000, 2000, 1000]);
    assert!(big.entry(ServiceIdx(0)).unwrap().swrr_cycle().is_empty());
    let small = cfg(SchedulerKind::WeightedRoundRobin, &[3, 2, 1]);
    assert_eq!(small.entry(ServiceIdx(0)).unwrap().swrr_cycle().len(), 6);
    let (mut a, mut b) = (SchedState::new(&big), SchedState::new(&small));
    for i in 0..600 {
        // 3000:2000:1000 from zero picks as 3:2:1 does, cycle by cycle.
        assert_eq!(
            a.pick(&big, ServiceIdx(0), &key(i)),
            b.pick(&small, ServiceIdx(0), &key(i)),
            "{i}"
        );
    }
    // Server 0 goes down: the rest share 2:1 exactly, every 3 picks.
    let mut s = service(SchedulerKind::WeightedRoundRobin, &[3, 2, 1]);
    s.servers[0].state = ServerState::Down;
    let changed = Config::new(vec![s]).unwrap();
    let picks: Vec<u16> = (0..300)
        .map(|i| b.pick(&changed, ServiceIdx(0), &key(i)).unwrap().0)
        .collect();
    for w in picks.chunks(3) {
        assert_eq!(w.iter().filter(|&&x| x == 1).count(), 2, "{w:?}");
        assert_eq!(w.iter().filter(|&&x| x == 2).count(), 1, "{w:?}");
    }
}

#[test]
fn every_scheduler_follows_weights() {
    let weights = [1, 2, 3, 4];
    let exact = [
        SchedulerKind::WeightedRoundRobin,
        SchedulerKind::WeightedLeastConn,
    ];
    for kind in exact {
        let sh = shares(&cfg(kind, &weights), 10_000, true);
        assert_by_weight(&sh, &weights, 0.001, &format!("{kind:?}"));
    }
    let hashed = [
        SchedulerKind::SourceHash,
        SchedulerKind::Maglev,
        SchedulerKind::Rendezvous,
    ];
    for kind in hashed {
        let sh = shares(&cfg(kind, &weights), 100_000, false);
        assert_by_weight(&sh, &weights, 0.01, &format!("{kind:?}"));
    }
    // Unweighted schedulers share equally among eligible servers.
    for kind in [SchedulerKind::RoundRobin, SchedulerKind::LeastConn] {
        let sh = shares(&cfg(kind, &weights), 10_000, true);
        assert_by_weight(&sh, &[1, 1, 1, 1], 0.001, &format!("{kind:?}"));
    }
}

#[test]
fn least_conn_follows_closures() {
    let c = cfg(SchedulerKind::LeastConn, &[1, 1, 1]);
    let mut st = SchedState::new(&c);
    for s in 0..3 {
        st.conn_opened(ServiceIdx(0), ServerIdx(s));
    }
    st.conn_opened(ServiceIdx(0), ServerIdx(0));
    st.conn_opened(ServiceIdx(0), ServerIdx(2));
    // Loads 2, 1, 2: server 1 is least loaded.
    assert_eq!(st.pick(&c, ServiceIdx(0), &key(0)), Some(ServerIdx(1)));
    st.conn_closed(ServiceIdx(0), ServerIdx(0));
    st.conn_closed(ServiceIdx(0), ServerIdx(0));
    assert_eq!(st.conns(ServiceIdx(0), ServerIdx(0)), 0);
    assert_eq!(st.pick(&c, ServiceIdx(0), &key(1)), Some(ServerIdx(0)));
    // Closing more than opened saturates at zero, never panics.
    st.conn_closed(ServiceIdx(0), ServerIdx(0));
    assert_eq!(st.conns(ServiceIdx(0), ServerIdx(0)), 0);
}

#[test]
fn none_without_eligible_and_drain_excluded() {
    let kinds = [
        SchedulerKind::RoundRobin,
        SchedulerKind::WeightedRoundRobin,
        SchedulerKind::LeastConn,
        SchedulerKind::WeightedLeastConn,
        SchedulerKind::SourceHash,
        SchedulerKind::Maglev,
        SchedulerKind::Rendezvous,
    ];
    for kind in kinds {
        // Empty pool.
        let c = cfg(kind, &[]);
        let mut st = SchedState::new(&c);
        assert_eq!(st.pick(&c, ServiceIdx(0), &key(1)), None, "{kind:?}");
        assert_eq!(st.stats.no_server, 1);
        // Every server drained, down, in maintenance or at weight 0.
        let mut s = service(kind, &[1, 1, 1, 0]);
        s.servers[0].state = ServerState::Drain;
        s.servers[1].state = ServerState::Down;
        s.servers[2].state = ServerState::Maint;
        let c = Config::new(vec![s]).unwrap();
        let mut st = SchedState::new(&c);
        for i in 0..100 {
            assert_eq!(st.pick(&c, ServiceIdx(0), &key(i)), None, "{kind:?}");
        }
        // One drained server among live ones is never chosen for new clients.
        let c = cfg(kind, &[1, 1, 1]);
        let c = c
            .with_server_state(ServiceIdx(0), ServerIdx(1), ServerState::Drain)
            .unwrap();
        let mut st = SchedState::new(&c);
        for i in 0..3000 {
            let s = st.pick(&c, ServiceIdx(0), &key(i)).unwrap();
            assert_ne!(s, ServerIdx(1), "{kind:?} picked the drained server");
            st.conn_opened(ServiceIdx(0), s);
        }
        // Unknown service: None and counted, no panic.
        assert_eq!(st.pick(&c, ServiceIdx(7), &key(1)), None);
        assert_eq!(st.stats.invalid_service, 1);
    }
}

fn backends(n: usize, weights: impl Fn(usize) -> u16) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend {
            index: ServerIdx(i as u16),
            weight: weights(i),
            ident: hash::server_ident(
                IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8 + 1)),
                Some(80),
            ),
        })
        .collect()
}

/// Fraction of 100k keys whose server changes when backend `removed` goes,
/// and whether only keys of the removed backend moved. `build` turns a
/// backend set into a picker.
fn moved_fraction<P: Fn(u64) -> Option<ServerIdx>>(
    n: usize,
    removed: usize,
    build: impl Fn(Vec<Backend>) -> P,
) -> (f64, bool) {
    let all = backends(n, |_| 1);
    let rest: Vec<Backend> = all
        .iter()
        .copied()
        .filter(|b| usize::from(b.index) != removed)
        .collect();
    let (before_p, after_p) = (build(all), build(rest));
    let mut moved = 0u32;
    let mut only_removed = true;
    const KEYS: u32 = 100_000;
    for i in 0..KEYS {
        let h = hash::flow_hash(99, key(i).src, key(i).src_port, 80);
        let before = before_p(h).unwrap();
        let after = after_p(h).unwrap();
        if before != after {
            moved += 1;
            if usize::from(before) != removed {
                only_removed = false;
            }
        }
    }
    (f64::from(moved) / f64::from(KEYS), only_removed)
}

#[test]
fn rendezvous_removal_moves_only_its_keys() {
    for n in [5usize, 10, 20] {
        let (f, only) = moved_fraction(n, 3, |b| move |h| hrw::pick(&b, h));
        assert!(only, "HRW moved keys that were not on the removed server");
        let expect = 1.0 / n as f64;
        assert!(
            (f - expect).abs() < 0.01,
            "n={n}: moved {f:.4}, ≈{expect:.4}"
        );
    }
}

#[test]
fn maglev_removal_moves_about_one_nth() {
    for n in [5usize, 10, 20] {
        let (f, _) = moved_fraction(n, 3, |b| {
            let m = Maglev::build(&b, 65_537).unwrap();
            move |h| m.lookup(h)
        });
        let expect = 1.0 / n as f64;
        // Maglev trades a little extra disruption for balance (paper §3.4).
        assert!(
            f >= expect - 0.01 && f < expect * 1.5,
            "n={n}: moved {f:.4}, ≈{expect:.4}"
        );
    }
}

#[test]
fn maglev_removal_with_cached_tables() {
    // Same as above but through Config snapshots: removing a server by state
    // change keeps the other servers' indices and moves ≈ 1/N of flows.
    let c = cfg(SchedulerKind::Maglev, &[1; 10]);
    let c2 = c
        .with_server_state(ServiceIdx(0), ServerIdx(4), ServerState::Down)
        .unwrap();
    let (mut s1, mut s2) = (SchedState::new(&c), SchedState::new(&c2));
    let mut moved = 0u32;
    for i in 0..100_000 {
        let a = s1.pick(&c, ServiceIdx(0), &key(i)).unwrap();
        let b = s2.pick(&c2, ServiceIdx(0), &key(i)).unwrap();
        assert_ne!(b, ServerIdx(4));
        moved += u32::from(a != b);
    }
    let f = f64::from(moved) / 100_000.0;
    assert!((0.09..0.15).contains(&f), "moved {f}");
}

#[test]
fn hashing_schedulers_agree_across_cores() {
    for kind in [
        SchedulerKind::SourceHash,
        SchedulerKind::Maglev,
        SchedulerKind::Rendezvous,
    ] {
        let c = cfg(kind, &[3, 1, 2, 5]);
        let (mut a, mut b) = (SchedState::new(&c), SchedState::new(&c));
        for i in 0..5000 {
            // Core B has seen other traffic: hashing must not depend on it.
            b.pick(&c, ServiceIdx(0), &key(i + 1_000_000));
            assert_eq!(
                a.pick(&c, ServiceIdx(0), &key(i)),
                b.pick(&c, ServiceIdx(0), &key(i)),
                "{kind:?}"
            );
        }
    }
}

#[test]
fn reconfigure_keeps_connection_counts() {
    let c = cfg(SchedulerKind::LeastConn, &[1, 1, 1]);
    let mut st = SchedState::new(&c);
    st.conn_opened(ServiceIdx(0), ServerIdx(2));
    st.conn_opened(ServiceIdx(0), ServerIdx(2));
    // New snapshot: server 0 removed, so old server 2 becomes index 1.
    let mut s = service(SchedulerKind::LeastConn, &[1, 1, 1]);
    s.servers.remove(0);
    let c2 = Config::new(vec![s]).unwrap();
    let map = Config::reload_map(&c, &c2);
    st.reconfigure(&c2, Some(&map));
    assert_eq!(st.conns(ServiceIdx(0), ServerIdx(1)), 2);
    assert_eq!(st.conns(ServiceIdx(0), ServerIdx(0)), 0);
    // Using a snapshot without reconfiguring self-heals (counted).
    let c3 = cfg(SchedulerKind::LeastConn, &[1, 1, 1, 1, 1]);
    assert!(st.pick(&c3, ServiceIdx(0), &key(0)).is_some());
    assert_eq!(st.stats.resyncs, 1);
}

#[test]
fn failover_takes_the_first_live_server_in_pool_order() {
    let c = cfg(SchedulerKind::Failover, &[1, 5, 1]);
    let mut st = SchedState::new(&c);
    for i in 0..50 {
        assert_eq!(st.pick(&c, ServiceIdx(0), &key(i)), Some(ServerIdx(0)));
    }
    // The first is out: the next takes every client; then the last.
    let c = c
        .with_server_state(ServiceIdx(0), ServerIdx(0), ServerState::Down)
        .unwrap();
    assert_eq!(st.pick(&c, ServiceIdx(0), &key(1)), Some(ServerIdx(1)));
    let c = c
        .with_server_state(ServiceIdx(0), ServerIdx(1), ServerState::Drain)
        .unwrap();
    assert_eq!(st.pick(&c, ServiceIdx(0), &key(2)), Some(ServerIdx(2)));
    // Back up: the first again.
    let c = c
        .with_server_state(ServiceIdx(0), ServerIdx(0), ServerState::Up)
        .unwrap();
    assert_eq!(st.pick(&c, ServiceIdx(0), &key(3)), Some(ServerIdx(0)));
}
