//! Source persistence: natural-class keys (acceptance of issue #3),
//! LocalDirector idle-timer semantics, agreement between cores, drain / down /
//! backup behaviour, installs from other cores, flush, capacity and reload.

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use tack_dataplane::Time;
use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::{
    ClientKeyRule, Config, Persistence, Protocol, RealServer, SchedulerKind, ServerState, Service,
};
use tack_dataplane::sched::{PickKey, SchedState};
use tack_dataplane::sticky::{
    ClientKey, InstallError, InstallOutcome, StickyConfig, StickyDecision, StickyEvent,
    StickyFullPolicy, StickyTable, client_key, first_choice,
};

const MIN: u64 = 60;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn service(weights: &[u16], rule: ClientKeyRule, minutes: u32) -> Service {
    let mut s = Service::new(ip("192.0.2.10"), Protocol::Tcp, Some(443));
    s.scheduler = SchedulerKind::LeastConn;
    s.persistence = Some(Persistence {
        key: rule,
        timeout_minutes: minutes,
    });
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

fn natural() -> ClientKeyRule {
    ClientKeyRule::NaturalClass { networks: vec![] }
}

fn table(capacity: usize) -> StickyTable {
    StickyTable::new(
        StickyConfig {
            capacity,
            ..StickyConfig::default()
        },
        Time::ZERO,
    )
    .unwrap()
}

fn pinned(d: StickyDecision) -> ServerIdx {
    match d {
        StickyDecision::Pinned { server, .. } => server,
        other => panic!("expected a pinned server, got {other:?}"),
    }
}

#[test]
fn natural_class_acceptance() {
    let cfg = Config::new(vec![service(&[1, 1, 1, 1, 1, 1, 1, 1], natural(), 10)]).unwrap();
    let mut t = table(1024);
    let now = Time::ZERO;
    for (a, b) in [
        ("172.16.1.5", "172.16.200.9"), // class B
        ("11.1.2.3", "11.200.0.1"),     // class A
        ("198.18.5.1", "198.18.5.77"),  // class C
    ] {
        let sa = pinned(t.resolve(&cfg, ServiceIdx(0), ip(a), now));
        let sb = pinned(t.resolve(&cfg, ServiceIdx(0), ip(b), now));
        assert_eq!(sa, sb, "{a} and {b} must share a server");
    }
    // Three keys were learned (one per natural network), each reported once.
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats.learned, 3);
    assert_eq!(t.stats.hits, 3);
    let learned: Vec<String> = t
        .drain_events()
        .map(|e| match e {
            StickyEvent::Learned { key, .. } => key.to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(learned, ["172.16.0.0/16", "11.0.0.0/8", "198.18.5.0/24"]);

    // Class D and E sources never create sticky entries.
    for src in ["224.0.0.5", "239.255.1.1", "240.1.2.3", "255.255.255.254"] {
        assert_eq!(
            t.resolve(&cfg, ServiceIdx(0), ip(src), now),
            StickyDecision::NotSticky
        );
    }
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats.unsticky, 4);
}

#[test]
fn natural_class_spreads_by_weight() {
    let weights = [1u16, 2, 3, 4];
    let cfg = Config::new(vec![service(&weights, natural(), 10)]).unwrap();
    let mut t = table(1 << 17);
    let mut counts = [0u32; 4];
    // 100k distinct class C networks (192.0.0.0 – 223.255.255.0).
    let n = 100_000u32;
    for i in 0..n {
        let net = 0xC000_0000u32 + (i.wrapping_mul(40_503) % (1 << 21)) * 256 + 7;
        let s = pinned(t.resolve(
            &cfg,
            ServiceIdx(0),
            IpAddr::V4(Ipv4Addr::from(net)),
            Time::ZERO,
        ));
        counts[usize::from(s)] += 1;
    }
    assert_eq!(t.len() as u32, n);
    for (i, &c) in counts.iter().enumerate() {
        let share = f64::from(c) / f64::from(n);
        let expect = f64::from(weights[i]) / 10.0;
        assert!(
            (share - expect).abs() < 0.01,
            "server {i}: {share} vs {expect}"
        );
    }
}

#[test]
fn idle_timer_restarts_when_the_last_connection_ends() {
    let cfg = Config::new(vec![service(&[1, 1, 1], natural(), 5)]).unwrap();
    let mut t = table(16);
    let src = ip("172.16.1.5");
    let s = pinned(t.resolve(&cfg, ServiceIdx(0), src, Time::ZERO));
    // A second connection from the same network.
    assert_eq!(
        pinned(t.resolve(&cfg, ServiceIdx(0), ip("172.16.9.9"), Time::ZERO)),
        s
    );
    let key = client_key(&natural(), src).unwrap();
    assert_eq!(t.get(ServiceIdx(0), &key).unwrap().active, 2);

    // While connections are open the binding never expires.
    assert_eq!(t.expire(Time::from_secs(100 * MIN), usize::MAX), 0);
    assert_eq!(t.len(), 1);

    // First connection ends at 100 min: still one open.
    t.release(&cfg, ServiceIdx(0), src, Time::from_secs(100 * MIN));
    assert_eq!(t.expire(Time::from_secs(200 * MIN), usize::MAX), 0);
    // Last one ends at 200 min: the 5 min timer starts now.
    t.release(
        &cfg,
        ServiceIdx(0),
        ip("172.16.9.9"),
        Time::from_secs(200 * MIN),
    );
    let b = t.get(ServiceIdx(0), &key).unwrap();
    assert_eq!(b.active, 0);
    assert_eq!(b.idle_expires, Some(Time::from_secs(205 * MIN)));
    assert_eq!(t.expire(Time::from_secs(204 * MIN), usize::MAX), 0);

    // A new connection at 204 min reuses the binding and stops the timer.
    assert_eq!(
        pinned(t.resolve(&cfg, ServiceIdx(0), src, Time::from_secs(204 * MIN))),
        s
    );
    assert_eq!(t.expire(Time::from_secs(300 * MIN), usize::MAX), 0);
    t.release(&cfg, ServiceIdx(0), src, Time::from_secs(300 * MIN));
    assert_eq!(
        t.expire(
            Time::from_secs(305 * MIN) - core::time::Duration::from_secs(2),
            usize::MAX
        ),
        0
    );
    assert_eq!(
        t.expire(
            Time::from_secs(305 * MIN) + core::time::Duration::from_secs(1),
            usize::MAX
        ),
        1
    );
    assert!(t.get(ServiceIdx(0), &key).is_none());
    assert_eq!(t.stats.expired, 1);

    // A release without a binding is counted, never panics.
    t.release(&cfg, ServiceIdx(0), src, Time::from_secs(400 * MIN));
    assert_eq!(t.stats.release_unknown, 1);
}

#[test]
fn expired_key_is_rebound_against_the_new_server_set() {
    let cfg = Config::new(vec![service(&[1, 1, 1, 1], natural(), 1)]).unwrap();
    let mut t = table(16);
    let src = ip("172.16.1.5");
    let first = pinned(t.resolve(&cfg, ServiceIdx(0), src, Time::ZERO));
    t.release(&cfg, ServiceIdx(0), src, Time::ZERO);
    // The pinned server is drained meanwhile: drain keeps sticky clients...
    let drained = cfg
        .with_server_state(ServiceIdx(0), first, ServerState::Drain)
        .unwrap();
    assert_eq!(
        pinned(t.resolve(&drained, ServiceIdx(0), src, Time::from_secs(30))),
        first
    );
    t.release(&drained, ServiceIdx(0), src, Time::from_secs(30));
    // ...until the binding expires (1 min idle): then the key is gone and a new
    // binding is made among the servers still taking new clients.
    assert_eq!(t.expire(Time::from_secs(91), usize::MAX), 1);
    let key = client_key(&natural(), src).unwrap();
    assert!(t.get(ServiceIdx(0), &key).is_none());
    let second = pinned(t.resolve(&drained, ServiceIdx(0), src, Time::from_secs(92)));
    assert_ne!(second, first);
    assert_eq!(t.get(ServiceIdx(0), &key).unwrap().server, Some(second));
    assert_eq!(t.stats.learned, 2);
}

#[test]
fn down_server_rebinds_to_backup_or_live_server() {
    let mut s = service(&[1, 1, 1, 0], natural(), 10);
    // Server 3 is a weight-0 hot standby: backup of server 0.
    s.servers[0].backup = Some(ServerIdx(3));
    let cfg = Config::new(vec![s]).unwrap();
    let mut t = table(256);
    // Find one key pinned to server 0 and one pinned to server 1.
    let mut on0 = None;
    let mut on1 = None;
    for i in 1..=200u8 {
        let src = IpAddr::V4(Ipv4Addr::new(i.max(1) % 127 + 1, i, 1, 1));
        match pinned(t.resolve(&cfg, ServiceIdx(0), src, Time::ZERO)) {
            ServerIdx(0) if on0.is_none() => on0 = Some(src),
            ServerIdx(1) if on1.is_none() => on1 = Some(src),
            _ => {}
        }
    }
    let (on0, on1) = (on0.unwrap(), on1.unwrap());
    t.drain_events().for_each(drop);

    // Server 0 goes down: its clients go to its backup (server 3).
    let down = cfg
        .with_server_state(ServiceIdx(0), ServerIdx(0), ServerState::Down)
        .unwrap();
    assert_eq!(
        pinned(t.resolve(&down, ServiceIdx(0), on0, Time::ZERO)),
        ServerIdx(3)
    );
    let ev: Vec<StickyEvent> = t.drain_events().collect();
    assert!(matches!(
        ev.as_slice(),
        [StickyEvent::Rebound {
            from: Some(ServerIdx(0)),
            to: ServerIdx(3),
            ..
        }]
    ));
    // It stays on the backup (sticky), even once server 0 is back.
    assert_eq!(
        pinned(t.resolve(&cfg, ServiceIdx(0), on0, Time::ZERO)),
        ServerIdx(3)
    );

    // Server 1 goes into maintenance without a backup: deterministic live choice.
    let maint = cfg
        .with_server_state(ServiceIdx(0), ServerIdx(1), ServerState::Maint)
        .unwrap();
    let to = pinned(t.resolve(&maint, ServiceIdx(0), on1, Time::ZERO));
    assert!(to == ServerIdx(0) || to == ServerIdx(2), "rebound to {to}");
    let key = client_key(&natural(), on1).unwrap();
    assert_eq!(
        Some(to),
        first_choice(maint.entry(ServiceIdx(0)).unwrap(), &key)
    );
    assert_eq!(t.stats.rebinds, 2);

    // Backup itself down: fall back to the deterministic choice.
    let mut t2 = table(16);
    let both = down
        .with_server_state(ServiceIdx(0), ServerIdx(3), ServerState::Down)
        .unwrap();
    t2.install(
        &cfg,
        ServiceIdx(0),
        client_key(&natural(), on0).unwrap(),
        ServerIdx(0),
        Time::ZERO,
    )
    .unwrap();
    let to = pinned(t2.resolve(&both, ServiceIdx(0), on0, Time::ZERO));
    assert!(to == ServerIdx(1) || to == ServerIdx(2));

    // Nothing live at all: no server.
    let dead = Config::new(vec![{
        let mut s = service(&[1], natural(), 10);
        s.servers[0].state = ServerState::Down;
        s
    }])
    .unwrap();
    assert_eq!(
        t.resolve(&dead, ServiceIdx(0), ip("172.16.1.1"), Time::ZERO),
        StickyDecision::NoServer
    );
    assert_eq!(t.stats.no_server, 1);
}

#[test]
fn first_choice_ignores_load_aware_schedulers() {
    // The service schedules non-sticky traffic by least connections; two cores
    // have very different per-core loads, yet they pin every key to the same
    // server, the weighted rendezvous choice.
    let cfg = Config::new(vec![service(&[1, 1, 1, 1], natural(), 10)]).unwrap();
    let (mut core_a, mut core_b) = (SchedState::new(&cfg), SchedState::new(&cfg));
    for _ in 0..1000 {
        core_a.conn_opened(ServiceIdx(0), ServerIdx(0));
        core_b.conn_opened(ServiceIdx(0), ServerIdx(3));
    }
    let pk = PickKey {
        src: ip("172.16.1.5"),
        src_port: 40000,
        dst_port: 443,
    };
    // The load-aware scheduler alone would make the cores disagree.
    assert_ne!(
        core_a.pick(&cfg, ServiceIdx(0), &pk),
        core_b.pick(&cfg, ServiceIdx(0), &pk)
    );
    let (mut ta, mut tb) = (table(4096), table(4096));
    for i in 0..2000u32 {
        let src = IpAddr::V4(Ipv4Addr::from(0x8000_0000u32 + i * 65_536 + 77));
        let a = pinned(ta.resolve(&cfg, ServiceIdx(0), src, Time::ZERO));
        let b = pinned(tb.resolve(&cfg, ServiceIdx(0), src, Time::ZERO));
        assert_eq!(a, b);
        let key = client_key(&natural(), src).unwrap();
        assert_eq!(
            Some(a),
            first_choice(cfg.entry(ServiceIdx(0)).unwrap(), &key)
        );
    }
}

#[test]
fn installs_from_other_cores() {
    let cfg = Config::new(vec![service(&[1, 1, 1], natural(), 10)]).unwrap();
    let mut t = table(16);
    let src = ip("172.16.1.5");
    let key = client_key(&natural(), src).unwrap();
    let local = first_choice(cfg.entry(ServiceIdx(0)).unwrap(), &key).unwrap();
    let other = ServerIdx((local.0 + 1) % 3);
    // Installed before any local traffic: the local core follows it.
    assert_eq!(
        t.install(&cfg, ServiceIdx(0), key, other, Time::ZERO),
        Ok(InstallOutcome::Created)
    );
    assert_eq!(
        pinned(t.resolve(&cfg, ServiceIdx(0), src, Time::ZERO)),
        other
    );
    assert_eq!(t.stats.learned, 0);
    // An install pointing at an unavailable server loses to the local binding.
    let down = cfg
        .with_server_state(ServiceIdx(0), local, ServerState::Down)
        .unwrap();
    assert_eq!(
        t.install(&down, ServiceIdx(0), key, local, Time::ZERO),
        Err(InstallError::Unavailable)
    );
    assert_eq!(t.get(ServiceIdx(0), &key).unwrap().server, Some(other));
    // A valid install replaces; open connections keep counting.
    assert_eq!(
        t.install(&cfg, ServiceIdx(0), key, local, Time::ZERO),
        Ok(InstallOutcome::Replaced {
            previous: Some(other)
        })
    );
    assert_eq!(t.get(ServiceIdx(0), &key).unwrap().active, 1);
    assert_eq!(
        t.install(&cfg, ServiceIdx(0), key, local, Time::ZERO),
        Ok(InstallOutcome::Unchanged)
    );
    // Malformed installs are refused and counted.
    let bad = ClientKey {
        addr: ip("172.16.1.5"),
        prefix: 16,
    };
    assert_eq!(
        t.install(&cfg, ServiceIdx(0), bad, ServerIdx(0), Time::ZERO),
        Err(InstallError::InvalidKey(bad))
    );
    assert_eq!(
        t.install(&cfg, ServiceIdx(0), key, ServerIdx(9), Time::ZERO),
        Err(InstallError::NoSuchServer)
    );
    assert_eq!(
        t.install(&cfg, ServiceIdx(5), key, ServerIdx(0), Time::ZERO),
        Err(InstallError::NoSuchService)
    );
    assert_eq!(t.stats.install_rejected, 4);
    // An installed idle binding expires after the timeout.
    let k2 = client_key(&natural(), ip("10.1.1.1")).unwrap();
    t.install(&cfg, ServiceIdx(0), k2, ServerIdx(2), Time::ZERO)
        .unwrap();
    assert_eq!(t.expire(Time::from_secs(10 * MIN), usize::MAX), 1);
    assert!(t.get(ServiceIdx(0), &k2).is_none());
}

#[test]
fn flush_and_show() {
    let mut a = service(&[1, 1], natural(), 10);
    let b = {
        let mut b = a.clone();
        b.port = Some(80);
        b
    };
    a.persistence.as_mut().unwrap().key = ClientKeyRule::Prefix(24);
    let cfg = Config::new(vec![a, b]).unwrap();
    let mut t = table(64);
    for src in ["10.1.1.1", "10.1.2.1", "10.1.3.1"] {
        t.resolve(&cfg, ServiceIdx(0), ip(src), Time::ZERO);
        t.resolve(&cfg, ServiceIdx(1), ip(src), Time::ZERO);
    }
    assert_eq!(t.len(), 4); // three /24 keys + one class A key
    let mut shown: Vec<String> = t
        .iter()
        .map(|b| {
            format!(
                "{} {} {:?} {}",
                b.service,
                b.key,
                b.server.is_some(),
                b.active
            )
        })
        .collect();
    shown.sort();
    assert_eq!(
        shown,
        [
            "0 10.1.1.0/24 true 1",
            "0 10.1.2.0/24 true 1",
            "0 10.1.3.0/24 true 1",
            "1 10.0.0.0/8 true 3",
        ]
    );
    let k = client_key(&ClientKeyRule::Prefix(24), ip("10.1.2.9")).unwrap();
    assert!(t.flush_key(ServiceIdx(0), &k));
    assert!(!t.flush_key(ServiceIdx(0), &k));
    assert_eq!(t.flush_service(ServiceIdx(0)), 2);
    assert_eq!(t.flush_all(), 1);
    assert!(t.is_empty());
    assert_eq!(t.stats.flushed, 4);
    // Releases of flushed bindings are harmless.
    t.release(&cfg, ServiceIdx(1), ip("10.1.1.1"), Time::ZERO);
    assert_eq!(t.stats.release_unknown, 1);
}

#[test]
fn capacity_is_bounded_with_counted_policies() {
    let cfg = Config::new(vec![service(&[1, 1, 1], ClientKeyRule::Address, 10)]).unwrap();
    let src = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    // Evict idle: in-use bindings are never evicted.
    let mut t = table(4);
    for i in 0..4 {
        t.resolve(&cfg, ServiceIdx(0), src(i), Time::ZERO);
    }
    let d = t.resolve(&cfg, ServiceIdx(0), src(10), Time::ZERO);
    assert!(matches!(d, StickyDecision::Pinned { tracked: false, .. }));
    assert_eq!(t.stats.full_bypass, 1);
    t.release(&cfg, ServiceIdx(0), src(2), Time::from_secs(1));
    let d = t.resolve(&cfg, ServiceIdx(0), src(11), Time::from_secs(2));
    assert!(matches!(d, StickyDecision::Pinned { tracked: true, .. }));
    assert_eq!(t.stats.full_evictions, 1);
    assert_eq!(t.len(), 4);
    let gone = client_key(&ClientKeyRule::Address, src(2)).unwrap();
    assert!(t.get(ServiceIdx(0), &gone).is_none());
    // Bypass: never evicts.
    let mut t = StickyTable::new(
        StickyConfig {
            capacity: 2,
            full_policy: StickyFullPolicy::Bypass,
            ..StickyConfig::default()
        },
        Time::ZERO,
    )
    .unwrap();
    for i in 0..10 {
        let d = t.resolve(&cfg, ServiceIdx(0), src(i), Time::ZERO);
        let key = client_key(&ClientKeyRule::Address, src(i)).unwrap();
        // Bypassed keys still get the deterministic choice.
        assert_eq!(
            pinned(d),
            first_choice(cfg.entry(ServiceIdx(0)).unwrap(), &key).unwrap()
        );
    }
    assert_eq!(t.len(), 2);
    assert_eq!(t.stats.full_bypass, 8);
}

#[test]
fn outbox_is_bounded() {
    let cfg = Config::new(vec![service(&[1, 1], ClientKeyRule::Address, 10)]).unwrap();
    let mut t = StickyTable::new(
        StickyConfig {
            capacity: 64,
            outbox_capacity: 3,
            ..StickyConfig::default()
        },
        Time::ZERO,
    )
    .unwrap();
    for i in 0..5u32 {
        t.resolve(
            &cfg,
            ServiceIdx(0),
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            Time::ZERO,
        );
    }
    assert_eq!(t.pending_events().len(), 3);
    assert_eq!(t.stats.events_dropped, 2);
}

#[test]
fn reload_follows_services_and_servers() {
    let cfg = Config::new(vec![service(&[1, 1, 1], natural(), 10)]).unwrap();
    let mut t = table(64);
    let mut bound = Vec::new();
    for i in 1..40u8 {
        let src = IpAddr::V4(Ipv4Addr::new(i, 1, 1, 1));
        bound.push((src, pinned(t.resolve(&cfg, ServiceIdx(0), src, Time::ZERO))));
    }
    // New snapshot: another service first, server 0 removed.
    let mut s = service(&[1, 1, 1], natural(), 10);
    s.servers.remove(0);
    let other = Service::new(ip("192.0.2.99"), Protocol::Udp, Some(53));
    let cfg2 = Config::new(vec![other, s]).unwrap();
    let map = Config::reload_map(&cfg, &cfg2);
    assert_eq!(t.apply_reload(&map), 0);
    for (src, old) in bound {
        let now = pinned(t.resolve(&cfg2, ServiceIdx(1), src, Time::ZERO));
        if old == ServerIdx(0) {
            // Its server was removed: rebound deterministically.
            let key = client_key(&natural(), src).unwrap();
            assert_eq!(
                Some(now),
                first_choice(cfg2.entry(ServiceIdx(1)).unwrap(), &key)
            );
        } else {
            assert_eq!(now.0, old.0 - 1, "binding must follow its server");
        }
    }
    // Changing the key rule drops the service's bindings.
    let mut s3 = service(&[1, 1], ClientKeyRule::Prefix(24), 10);
    s3.servers.remove(0);
    let cfg3 = Config::new(vec![s3]).unwrap();
    let n = t.len();
    assert_eq!(t.apply_reload(&Config::reload_map(&cfg2, &cfg3)), n);
    assert!(t.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Two cores with the same snapshot choose the same server for any key,
    /// whatever the weights and states, and whatever else they saw before.
    #[test]
    fn two_cores_agree(
        weights in proptest::collection::vec(0u16..=20, 1..12),
        states in proptest::collection::vec(0u8..4, 12),
        prefix in 8u8..=32,
        sources in proptest::collection::vec(any::<u32>(), 1..200),
        noise in proptest::collection::vec(any::<u32>(), 0..50),
        natural_rule in any::<bool>(),
    ) {
        let rule = if natural_rule { natural() } else { ClientKeyRule::Prefix(prefix) };
        let mut s = service(&weights, rule, 10);
        for (srv, st) in s.servers.iter_mut().zip(&states) {
            srv.state = [ServerState::Up, ServerState::Drain, ServerState::Maint, ServerState::Down][*st as usize];
        }
        let cfg = Config::new(vec![s]).unwrap();
        let (mut a, mut b) = (table(512), table(512));
        for &n in &noise {
            b.resolve(&cfg, ServiceIdx(0), IpAddr::V4(Ipv4Addr::from(n)), Time::ZERO);
        }
        for &src in &sources {
            let src = IpAddr::V4(Ipv4Addr::from(src));
            let da = a.resolve(&cfg, ServiceIdx(0), src, Time::ZERO);
            let db = b.resolve(&cfg, ServiceIdx(0), src, Time::ZERO);
            let sa = match da { StickyDecision::Pinned { server, .. } => Some(server), _ => None };
            let sb = match db { StickyDecision::Pinned { server, .. } => Some(server), _ => None };
            prop_assert_eq!(sa, sb);
            prop_assert_eq!(
                std::mem::discriminant(&da),
                std::mem::discriminant(&db)
            );
            if let Some(s) = sa {
                // Only servers that may take clients are ever chosen.
                let st = cfg.service(ServiceIdx(0)).unwrap().servers[usize::from(s)].state;
                prop_assert!(st.keeps_clients());
            }
        }
    }
}
