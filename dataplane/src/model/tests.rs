use super::*;
use crate::ids::{ServerIdx, ServiceIdx};
use std::net::Ipv6Addr;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn web() -> Service {
    let mut s = Service::new(v4(192, 0, 2, 10), Protocol::Tcp, Some(80));
    s.servers = vec![
        RealServer::new(v4(10, 0, 0, 1)),
        RealServer::new(v4(10, 0, 0, 2)),
    ];
    s
}

#[test]
fn valid_and_lookup() {
    let mut all = web();
    all.port = None;
    let cfg = Config::new(vec![web(), all]).unwrap();
    assert_eq!(
        cfg.lookup(v4(192, 0, 2, 10), Protocol::Tcp, 80),
        Some(ServiceIdx(0))
    );
    assert_eq!(
        cfg.lookup(v4(192, 0, 2, 10), Protocol::Tcp, 443),
        Some(ServiceIdx(1))
    );
    assert_eq!(cfg.lookup(v4(192, 0, 2, 10), Protocol::Udp, 80), None);
    assert_eq!(cfg.entry(ServiceIdx(0)).unwrap().eligible().len(), 2);
}

/// `lookup` (a packed-word index for IPv4) answers as the identity
/// index does: the exact port, else the all-ports service.
#[test]
fn lookup_agrees_with_the_identity_index() {
    let vips = [
        v4(192, 0, 2, 10),
        v4(192, 0, 2, 11),
        v4(10, 0, 0, 80),
        v4(0, 0, 0, 80),
        "2001:db8::10".parse().unwrap(),
    ];
    let ports = [1u16, 80, 443, 65535];
    let svc = |vip: IpAddr, proto, port| {
        let mut s = Service::new(vip, proto, port);
        s.servers = vec![RealServer::new(match vip {
            IpAddr::V4(_) => v4(10, 0, 0, 1),
            IpAddr::V6(_) => "2001:db8:1::1".parse().unwrap(),
        })];
        s
    };
    let mut services = Vec::new();
    for (i, &vip) in vips.iter().enumerate() {
        for (j, proto) in [Protocol::Tcp, Protocol::Udp].into_iter().enumerate() {
            // Every third combination has no all-ports service, and
            // every port but one of each is left out somewhere.
            for (k, &port) in ports.iter().enumerate() {
                if (i + j + k) % 4 != 0 {
                    services.push(svc(vip, proto, Some(port)));
                }
            }
            if (i + j) % 3 != 0 {
                services.push(svc(vip, proto, None));
            }
        }
    }
    if let Err(e) = Config::validate(&services) {
        panic!("{e}");
    }
    let cfg = Config::new(services).unwrap();
    let mut hits = 0;
    for vip in vips.iter().copied().chain([v4(192, 0, 2, 12)]) {
        for proto in [Protocol::Tcp, Protocol::Udp] {
            for port in ports.iter().copied().chain([0, 8080]) {
                let ident = |port| ServiceIdent {
                    vip,
                    protocol: proto,
                    port,
                };
                let want = cfg
                    .find(&ident(Some(port)))
                    .or_else(|| cfg.find(&ident(None)));
                assert_eq!(cfg.lookup(vip, proto, port), want, "{vip} {proto:?} {port}");
                hits += usize::from(want.is_some());
            }
        }
    }
    assert!(hits > 40, "{hits}");
}

#[test]
fn errors_are_precise() {
    assert!(matches!(
        Config::new(vec![web(), web()]),
        Err(ConfigError::DuplicateService {
            first: 0,
            second: 1,
            ..
        })
    ));
    let mut s = web();
    s.servers[1].backup = Some(ServerIdx(1));
    assert_eq!(
        Config::new(vec![s]).unwrap_err(),
        ConfigError::BackupSelf {
            service: 0,
            server: 1
        }
    );
    let mut s = web();
    s.servers[0].backup = Some(ServerIdx(5));
    assert!(matches!(
        Config::new(vec![s]),
        Err(ConfigError::BackupOutOfRange {
            backup: ServerIdx(5),
            ..
        })
    ));
    let mut s = web();
    s.mode = ForwardMode::FullNat;
    assert_eq!(
        Config::new(vec![s]).unwrap_err(),
        ConfigError::FullNatWithoutLocalAddrs { service: 0 }
    );
    let mut s = web();
    s.servers
        .push(RealServer::new(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    assert!(matches!(
        Config::new(vec![s.clone()]),
        Err(ConfigError::FamilyMismatch { server: 2, .. })
    ));
    s.mode = ForwardMode::Tunnel;
    assert!(Config::new(vec![s]).is_ok());
    let mut s = web();
    s.servers.push(RealServer::new(v4(10, 0, 0, 1)));
    assert!(matches!(
        Config::new(vec![s]),
        Err(ConfigError::DuplicateServer {
            first: 0,
            second: 2,
            ..
        })
    ));
    let mut s = web();
    s.scheduler = SchedulerKind::Maglev;
    s.maglev_table_size = 65536;
    assert!(matches!(
        Config::new(vec![s]),
        Err(ConfigError::MaglevTableSize { .. })
    ));
    let mut s = web();
    s.persistence = Some(Persistence {
        key: ClientKeyRule::NaturalClass {
            networks: vec![Ipv4Addr::new(172, 16, 1, 0)],
        },
        timeout_minutes: 5,
    });
    assert!(matches!(
        Config::new(vec![s]),
        Err(ConfigError::NaturalClassNetwork { .. })
    ));
    let mut s = web();
    s.persistence = Some(Persistence {
        key: ClientKeyRule::Prefix(33),
        timeout_minutes: 5,
    });
    assert!(matches!(
        Config::new(vec![s]),
        Err(ConfigError::PrefixLength { prefix: 33, .. })
    ));
    let mut s = web();
    s.local_pool = Some(LocalPool {
        addrs: vec![v4(10, 1, 0, 1)],
        port_min: 1024,
        port_max: 2000,
        peer_addrs: Vec::new(),
    });
    assert!(matches!(
        Config::new(vec![s]),
        Err(ConfigError::LocalPoolUnused { .. })
    ));
}

#[test]
fn netmask() {
    assert_eq!(
        ClientKeyRule::from_netmask(Ipv4Addr::new(255, 255, 255, 0)).unwrap(),
        ClientKeyRule::Prefix(24)
    );
    assert_eq!(
        ClientKeyRule::from_netmask(Ipv4Addr::new(0, 0, 0, 0)).unwrap(),
        ClientKeyRule::Prefix(0)
    );
    assert!(ClientKeyRule::from_netmask(Ipv4Addr::new(255, 0, 255, 0)).is_err());
}

#[test]
fn classes() {
    assert_eq!(natural_class(Ipv4Addr::new(11, 1, 2, 3)), NaturalClass::A);
    assert_eq!(natural_class(Ipv4Addr::new(172, 16, 1, 5)), NaturalClass::B);
    assert_eq!(natural_class(Ipv4Addr::new(198, 18, 5, 1)), NaturalClass::C);
    assert_eq!(natural_class(Ipv4Addr::new(224, 0, 0, 1)), NaturalClass::D);
    assert_eq!(natural_class(Ipv4Addr::new(250, 0, 0, 1)), NaturalClass::E);
}

#[test]
fn state_change_and_reload_map() {
    let cfg = Config::new(vec![web()]).unwrap();
    let c2 = cfg
        .with_server_state(ServiceIdx(0), ServerIdx(0), ServerState::Drain)
        .unwrap();
    assert_eq!(c2.entry(ServiceIdx(0)).unwrap().eligible().len(), 1);
    assert!(Config::reload_map(&cfg, &c2).is_identity());
    assert!(
        cfg.with_server_state(ServiceIdx(0), ServerIdx(9), ServerState::Down)
            .is_err()
    );
    assert!(
        cfg.with_server_state(ServiceIdx(3), ServerIdx(0), ServerState::Down)
            .is_err()
    );

    let mut s = web();
    s.servers.remove(0);
    s.servers.push(RealServer::new(v4(10, 0, 0, 3)));
    let other = Service::new(v4(192, 0, 2, 11), Protocol::Udp, Some(53));
    let c3 = Config::new(vec![other, s]).unwrap();
    let m = Config::reload_map(&cfg, &c3);
    assert_eq!(m.service_index(ServiceIdx(0)), Some(ServiceIdx(1)));
    assert_eq!(m.server_index(ServiceIdx(0), ServerIdx(0)), None);
    assert_eq!(
        m.server_index(ServiceIdx(0), ServerIdx(1)),
        Some(ServerIdx(0))
    );
    assert!(!m.is_identity());
}
