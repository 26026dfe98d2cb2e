//! The body of the `pipeline` fuzz target (`dataplane/fuzz/`), kept in the
//! crate so that `cargo test` replays the committed corpus on stable Rust
//! (`dataplane/tests/fuzz_pipeline_corpus.rs`).
//!
//! An input is a script of records `[op, len_lo, len_hi, bytes...]` run
//! against a fresh pipeline (worker 0 of 2, RSS on both ports, services of
//! every mode and family, deliberately tiny tables and frame pool so that
//! full tables, held frames and allocation failures are reached):
//!
//! * `op % 4 == 0`: a frame received (`bytes`, at most 2048) on port
//!   `(op >> 2) & 1`; consecutive frames form one burst;
//! * `op % 4 == 1`: time advances by `bytes[0] * 100 ms` and the pipeline polls;
//! * `op % 4 == 2`: a control message chosen by `bytes`;
//! * `op % 4 == 3`: events are drained and owner_worker is asked about the
//!   frames of the record.
//!
//! Checked after every step: nothing panics; every received frame is
//! accounted exactly once; every frame sent parses and its IPv4 header
//! checksum verifies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use super::{ControlMsg, Output, Pipeline, PipelineConfig, PortSpec, Route, WorkerSpec};
use crate::conn::ConnTableConfig;
use crate::frame::{Frame, VecAlloc, VecFrame};
use crate::model::{
    ClientKeyRule, Config, ForwardMode, LocalPool, Persistence, Protocol, RealServer, Redirect,
    SchedulerKind, ServerIdx, ServerState, Service, ServiceIdx,
};
use crate::redirect::ServerUrls;
use crate::rss::MS_RSS_KEY;
use crate::sticky::{ClientKey, StickyConfig};
use crate::time::Time;
use crate::wire::{self, EthernetAddress, L3Kind, checksum};

use super::neigh::NeighConfig;

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn v6(s: u128) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(s))
}

/// The fuzzing configuration (the topology of the pipeline tests).
fn fuzz_config() -> Arc<PipelineConfig> {
    static CFG: OnceLock<Arc<PipelineConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let vip4 = v4([203, 0, 113, 10]);
        let vip6 = v6(0x2001_0db8_0002_0000_0000_0000_0000_0010);
        let s4 = [v4([10, 1, 0, 5]), v4([10, 1, 0, 6])];
        let s6 = [v6(0xfd00_0001_0000_0000_0000_0000_0000_0005)];
        let local4 = v4([10, 1, 0, 254]);
        let local6 = v6(0xfd00_0001_0000_0000_0000_0000_0000_00fe);
        let mut services = Vec::new();
        let modes = [
            ForwardMode::Nat,
            ForwardMode::FullNat,
            ForwardMode::Dsr,
            ForwardMode::Tunnel,
        ];
        for (i, mode) in modes.into_iter().enumerate() {
            for (vip, servers, local) in [(vip4, &s4[..], local4), (vip6, &s6[..], local6)] {
                for proto in [Protocol::Tcp, Protocol::Udp] {
                    let mut s = Service::new(vip, proto, Some([80, 443, 22, 25][i]));
                    s.mode = mode;
                    s.scheduler = [
                        SchedulerKind::RoundRobin,
                        SchedulerKind::Maglev,
                        SchedulerKind::LeastConn,
                        SchedulerKind::SourceHash,
                    ][i];
                    s.maglev_table_size = 251;
                    s.servers = servers.iter().map(|a| RealServer::new(*a)).collect();
                    if servers.len() > 1 {
                        s.servers[0].backup = Some(ServerIdx(1));
                        s.servers[1].port = Some(8080);
                    }
                    if mode == ForwardMode::FullNat {
                        s.local_pool = Some(LocalPool {
                            addrs: vec![local],
                            port_min: 40000,
                            port_max: 40100,
                            peer_addrs: Vec::new(),
                        });
                    }
                    if i == 0 && vip.is_ipv4() {
                        s.persistence = Some(Persistence {
                            key: ClientKeyRule::NaturalClass { networks: vec![] },
                            timeout_minutes: 1,
                        });
                    }
                    services.push(s);
                }
            }
        }
        // All ports of the VIP, sticky by /24.
        let mut all = Service::new(vip4, Protocol::Udp, None);
        all.servers = vec![RealServer::new(s4[1])];
        all.persistence = Some(Persistence {
            key: ClientKeyRule::Prefix(24),
            timeout_minutes: 1,
        });
        services.push(all);
        // Redirect services (the responder: SYN cookies, 302s).
        for (vip, servers) in [(vip4, &s4[..]), (vip6, &s6[..])] {
            let mut r = Service::new(vip, Protocol::Tcp, Some(8000));
            r.redirect = Some(Redirect {
                secure_prefixes: vec!["/s/".into()],
            });
            r.servers = servers
                .iter()
                .map(|a| {
                    let mut s = RealServer::new(*a);
                    s.urls = Some(ServerUrls {
                        http: format!("http://{a}"),
                        https: format!("https://{a}"),
                    });
                    s
                })
                .collect();
            services.push(r);
        }
        // SYN-proxied services (cookies, then sequence translation), NAT and
        // full NAT.
        for (vip, servers, local) in [(vip4, &s4[..], local4), (vip6, &s6[..], local6)] {
            for (port, mode) in [(8080, ForwardMode::Nat), (8443, ForwardMode::FullNat)] {
                let mut s = Service::new(vip, Protocol::Tcp, Some(port));
                s.mode = mode;
                s.syn_proxy = true;
                s.servers = servers.iter().map(|a| RealServer::new(*a)).collect();
                if mode == ForwardMode::FullNat {
                    s.local_pool = Some(LocalPool {
                        addrs: vec![local],
                        port_min: 40200,
                        port_max: 40300,
                        peer_addrs: Vec::new(),
                    });
                }
                services.push(s);
            }
        }
        let ports = vec![
            PortSpec {
                mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
                addresses: vec![
                    (v4([198, 51, 100, 1]), 24),
                    (v6(0x2001_0db8_0001_0000_0000_0000_0000_0001), 64),
                ],
                mtu: 1500,
            },
            PortSpec {
                mac: EthernetAddress([2, 0, 0, 0, 1, 2]),
                addresses: vec![
                    (v4([10, 1, 0, 1]), 24),
                    (v6(0xfd00_0001_0000_0000_0000_0000_0000_0001), 64),
                ],
                mtu: 1500,
            },
        ];
        Arc::new(PipelineConfig {
            ports,
            services: Arc::new(Config::new(services).unwrap_or_else(|_| Config::empty())),
            routes: vec![
                Route {
                    dst: v4([0, 0, 0, 0]),
                    prefix_len: 0,
                    port: 0,
                    gateway: Some(v4([198, 51, 100, 254])),
                },
                Route {
                    dst: v6(0),
                    prefix_len: 0,
                    port: 0,
                    gateway: Some(v6(0x2001_0db8_0001_0000_0000_0000_0000_00fe)),
                },
            ],
            conn4: ConnTableConfig {
                capacity: 16,
                hash_seed: 11,
                ..ConnTableConfig::default()
            },
            conn6: ConnTableConfig {
                capacity: 8,
                hash_seed: 12,
                ..ConnTableConfig::default()
            },
            sticky: StickyConfig {
                capacity: 4,
                outbox_capacity: 8,
                ..StickyConfig::default()
            },
            neigh: NeighConfig {
                capacity: 8,
                hold: 2,
                ..NeighConfig::default()
            },
            icmp_rate: 20,
            outbox_capacity: 16,
            ..PipelineConfig::default()
        })
    })
    .clone()
}

fn check_output(out: &mut Output<VecFrame>) {
    for q in &out.tx {
        for f in q {
            let b = f.bytes();
            let c = match wire::classify(b) {
                Ok(c) => c,
                Err(e) => panic!("the pipeline sent an unparseable frame ({e}): {b:02x?}"),
            };
            if c.l3 == L3Kind::Ipv4 {
                let hl = usize::from(b[c.l3_offset] & 0x0f) * 4;
                assert_eq!(
                    checksum::sum(&b[c.l3_offset..c.l3_offset + hl]),
                    0xffff,
                    "IPv4 header checksum of a sent frame"
                );
            }
        }
    }
    out.clear();
}

fn control(b: &[u8]) -> ControlMsg {
    let g = |i: usize| b.get(i).copied().unwrap_or(0);
    let service = u16::from(g(1) % 20);
    let server = u16::from(g(2) % 3);
    match g(0) % 8 {
        0 => ControlMsg::ServerState {
            service: ServiceIdx(service),
            server: ServerIdx(server),
            state: [
                ServerState::Up,
                ServerState::Drain,
                ServerState::Maint,
                ServerState::Down,
            ][usize::from(g(3) % 4)],
        },
        1 => ControlMsg::ServerWeight {
            service: ServiceIdx(service),
            server: ServerIdx(server),
            weight: u16::from(g(3) % 4),
        },
        2 => ControlMsg::StickyBinding {
            service: ServiceIdx(service),
            key: ClientKey {
                addr: v4([g(3), g(4), 0, 0]),
                prefix: g(5) % 33,
            },
            server: ServerIdx(server),
        },
        3 => ControlMsg::Neighbor {
            port: u16::from(g(1) % 3),
            addr: if g(2) & 1 == 0 {
                v4([10, 1, 0, g(3)])
            } else {
                v4([198, 51, 100, g(3)])
            },
            mac: EthernetAddress([g(4) & 0xfe, 0, 0, 0, g(5), g(6)]),
        },
        4 => ControlMsg::FlushConnections,
        5 => ControlMsg::FlushSticky {
            service: (g(1) & 1 == 0).then_some(ServiceIdx(service)),
        },
        6 => ControlMsg::FlushNeighbors,
        _ => ControlMsg::Services(fuzz_config().services.clone()),
    }
}

/// Runs the pipeline on the script `data` (see the module documentation).
/// Panics (reports a bug to the fuzzer) if an invariant fails.
pub fn fuzz_pipeline(data: &[u8]) {
    let cfg = fuzz_config();
    let worker = WorkerSpec {
        index: 0,
        n_workers: 2,
        queue: 0,
        rx_queues: vec![2, 2],
        rss_key: vec![Some(MS_RSS_KEY.to_vec()), Some(MS_RSS_KEY.to_vec())],
    };
    let Ok(mut p) = Pipeline::<VecFrame>::new(cfg, worker) else {
        panic!("the fuzzing configuration is valid");
    };
    let mut out = Output::new(2);
    let mut alloc = VecAlloc {
        remaining: Some(16),
    };
    let mut now = Time::from_secs(1);
    let mut burst: Vec<VecFrame> = Vec::with_capacity(64);
    let mut burst_port = 0u16;
    let mut events = Vec::new();
    let mut rest = data;
    let mut steps = 0;
    while let [op, lo, hi, tail @ ..] = rest {
        steps += 1;
        if steps > 256 {
            break;
        }
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let port = u16::from((op >> 2) & 1);
        if op % 4 == 0 && (burst.is_empty() || port == burst_port) && burst.len() < 64 {
            burst_port = port;
            burst.push(VecFrame::new(&bytes[..len.min(VecFrame::CAPACITY)]));
            continue;
        }
        if !burst.is_empty() {
            p.process_burst(now, burst_port, &mut burst, &mut out, &mut alloc);
            assert!(burst.is_empty(), "the pipeline takes every frame");
            check_output(&mut out);
        }
        match op % 4 {
            0 => {
                burst_port = port;
                burst.push(VecFrame::new(&bytes[..len.min(VecFrame::CAPACITY)]));
            }
            1 => {
                now = now
                    + core::time::Duration::from_millis(
                        100 * u64::from(bytes.first().copied().unwrap_or(1)),
                    );
                p.poll(now, &mut out, &mut alloc);
                check_output(&mut out);
            }
            2 => p.apply(control(bytes)),
            _ => {
                p.drain_events(&mut events);
                events.clear();
                let f = VecFrame::new(bytes);
                let _ = p.owner_worker(&f, port);
                let _ = p.connections().count();
                let _ = p.sticky_bindings().count();
                let _ = p.neighbors().count();
            }
        }
        let c = p.counters();
        assert_eq!(
            c.accounted(),
            c.rx_frames,
            "every frame accounted once: {c:?}"
        );
    }
    if !burst.is_empty() {
        p.process_burst(now, burst_port, &mut burst, &mut out, &mut alloc);
        check_output(&mut out);
    }
    // Let every timer run out.
    for _ in 0..4 {
        now = now + core::time::Duration::from_secs(1000);
        p.poll(now, &mut out, &mut alloc);
        check_output(&mut out);
    }
    let c = p.counters();
    assert_eq!(
        c.accounted(),
        c.rx_frames,
        "every frame accounted once: {c:?}"
    );
}

/// Wraps frames into a script for [`fuzz_pipeline`]: each `(port, frame)`
/// becomes a receive record, with a poll after each (used to seed the corpus).
pub fn fuzz_script(frames: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (port, f) in frames {
        let len = u16::try_from(f.len()).unwrap_or(u16::MAX);
        out.push(((*port as u8) & 1) << 2);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&f[..usize::from(len)]);
        out.extend_from_slice(&[1, 1, 0, 1]);
    }
    out
}
