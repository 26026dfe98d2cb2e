//! Per-port, per-service and per-server state computed once per configuration, so that the packet path reads it without deriving anything.

use super::*;

/// How a port steers received flows to queues (hardware RSS, or the
/// software hash the runtime applies for devices without RSS).
pub(crate) struct Steer {
    pub(super) toeplitz: Toeplitz,
    pub(super) reta: Reta,
    /// The queue (RSS) or worker (software) this pipeline owns.
    pub(super) target: u16,
}

/// A port as the pipeline uses it.
pub(crate) struct PortRt {
    pub(crate) mac: EthernetAddress,
    pub(crate) mtu: u16,
    pub(crate) v4: Vec<(Ipv4Addr, u8)>,
    pub(crate) v6: Vec<(Ipv6Addr, u8)>,
    pub(crate) steer: Steer,
}

impl PortRt {
    /// The port's IPv4 address to use as source towards `dst`: one whose
    /// subnet holds `dst`, else the first.
    pub(crate) fn src_v4_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.v4
            .iter()
            .find(|(a, p)| route::same_net_v4(*a, dst, *p))
            .or(self.v4.first())
            .map(|(a, _)| *a)
    }

    /// The port's IPv6 address to use as source towards `dst`.
    pub(crate) fn src_v6_for(&self, dst: &Ipv6Addr) -> Option<Ipv6Addr> {
        self.v6
            .iter()
            .find(|(a, p)| route::same_net_v6(a, dst, *p))
            .or(self.v6.first())
            .map(|(a, _)| *a)
    }

    /// The port's source address of `dst`'s family towards `dst`.
    pub(crate) fn src_for(&self, dst: IpAddr) -> Option<IpAddr> {
        match dst {
            IpAddr::V4(d) => self.src_v4_for(d).map(IpAddr::V4),
            IpAddr::V6(d) => self.src_v6_for(&d).map(IpAddr::V6),
        }
    }
}

/// What an address of ours is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AddrInfo {
    /// An address of this port.
    pub(crate) port: Option<u16>,
    /// A VIP.
    pub(crate) vip: bool,
    /// A full-NAT local address.
    pub(crate) snat: bool,
    /// Ports on which ARP / NDP for it is answered.
    pub(crate) answer_ports: u64,
}

/// A real server as the packet path uses it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SrvRt {
    pub(crate) addr: IpAddr,
    pub(crate) port: Option<u16>,
    /// `up` or `drain`: established connections and sticky clients stay.
    pub(crate) keeps: bool,
    /// Egress port and next hop.
    pub(crate) route: Option<(u16, IpAddr)>,
    /// Index of the next hop's neighbour entry, as last seen.
    pub(crate) nh_hint: u32,
    /// MTU of the egress port (0 without a route).
    pub(crate) mtu: u16,
    /// MAC address of the egress port.
    pub(crate) src_mac: EthernetAddress,
    /// The address's term in full-NAT reply hashes under the egress port's
    /// RSS key ([`Toeplitz::addr_term`](crate::rss::Toeplitz::addr_term), as source).
    pub(crate) rss_term: u32,
}

/// Per-service data derived from the snapshot and the routes.
#[derive(Debug, Clone)]
pub(crate) struct SvcRt {
    /// How the service's new connections are transmitted.
    pub(crate) xmit: Xmit,
    /// New TCP flows may start without a SYN (deterministic server choice).
    pub(crate) pickup: bool,
    /// A redirect service: answered by the responder, never forwarded.
    pub(crate) redirect: bool,
    /// Answer segments of unknown connections with a reset.
    pub(crate) reset_unknown: bool,
    /// New connections go through the SYN proxy (`synproxy.rs`).
    pub(crate) syn_proxy: bool,
    pub(crate) persistent: bool,
    /// Full-NAT local addresses ([`LocalPool::all`]): a connection's local
    /// address is an index here.
    pub(crate) locals: Vec<IpAddr>,
    /// How many of `locals` are this node's, the ones new connections pick.
    pub(crate) own_locals: usize,
    /// Per port, the local addresses' terms in reply hashes under its RSS
    /// key (as destination), by the index of `locals`.
    pub(crate) local_rss_terms: Vec<Vec<u32>>,
    pub(crate) port_min: u16,
    pub(crate) port_max: u16,
    pub(crate) servers: Vec<SrvRt>,
}

/// (address, protocol, port; 0 = any) of the servers of NAT-mode services.
pub(super) fn build_nat_servers(cfg: &Config) -> hashbrown::HashSet<(IpAddr, u8, u16)> {
    let mut set = hashbrown::HashSet::new();
    for (_, s) in cfg.services() {
        if s.mode != ForwardMode::Nat {
            continue;
        }
        for srv in &s.servers {
            // A server without its own port answers from the service's port
            // (or from any port, for an all-ports service).
            let port = srv.port.or(s.port).unwrap_or(0);
            set.insert((srv.addr, s.protocol.ip_proto(), port));
        }
    }
    set
}

/// The addresses of every service's real servers: what they send to the
/// host (the replies to its health checks) is control traffic there.
pub(super) fn build_server_addrs(cfg: &Config) -> hashbrown::HashSet<IpAddr> {
    cfg.services()
        .flat_map(|(_, s)| s.servers.iter().map(|srv| srv.addr))
        .collect()
}

/// The steering of NAT connections by their client: the software steering
/// of a port without RSS (the standard key, a round-robin table of
/// [`PipelineConfig::reta_size`] entries over the workers), for every port.
pub(super) fn client_steer(
    cfg: &PipelineConfig,
    worker: &WorkerSpec,
) -> Result<Steer, ConfigError> {
    let rss = |source| ConfigError::Rss { port: 0, source };
    Ok(Steer {
        toeplitz: Toeplitz::new(&MS_RSS_KEY).map_err(rss)?,
        reta: Reta::round_robin(cfg.reta_size.max(1), worker.n_workers.max(1)).map_err(rss)?,
        target: worker.index,
    })
}

pub(super) fn make_pickers(ports: &[PortRt], start: u16) -> Vec<SnatPortPicker> {
    ports
        .iter()
        .map(|p| SnatPortPicker::new(p.steer.target, start))
        .collect()
}

/// Ports, address map and routing table built from a configuration.
pub(super) type BuiltPorts = (Vec<PortRt>, Fib);

/// Validates the ports and routes and builds their runtime form.
pub(super) fn build_ports(
    cfg: &PipelineConfig,
    worker: &WorkerSpec,
) -> Result<BuiltPorts, ConfigError> {
    let n = cfg.ports.len();
    if n > MAX_PORTS {
        return Err(ConfigError::TooManyPorts(n));
    }
    if worker.rx_queues.len() != n || worker.rss_key.len() != n {
        return Err(ConfigError::PortCount {
            ports: n,
            rx_queues: worker.rx_queues.len(),
            rss_keys: worker.rss_key.len(),
        });
    }
    let mut ports = Vec::with_capacity(n);
    for (i, p) in cfg.ports.iter().enumerate() {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(a, len) in &p.addresses {
            let bad = match a {
                IpAddr::V4(x) => {
                    len > 32 || x.is_unspecified() || x.is_multicast() || x.is_broadcast()
                }
                IpAddr::V6(x) => len > 128 || x.is_unspecified() || x.is_multicast(),
            };
            if bad {
                return Err(ConfigError::PortAddress {
                    port: i,
                    addr: a,
                    prefix_len: len,
                });
            }
            match a {
                IpAddr::V4(x) => v4.push((x, len)),
                IpAddr::V6(x) => v6.push((x, len)),
            }
        }
        if p.mtu < 576 || (!v6.is_empty() && p.mtu < 1280) {
            return Err(ConfigError::Mtu {
                port: i,
                mtu: p.mtu,
            });
        }
        let queues = worker.rx_queues[i];
        if queues == 0 {
            return Err(ConfigError::NoQueues { port: i });
        }
        // A port without RSS key is steered in software over the workers
        // (with the standard key), so `owner_worker` and the SNAT port
        // choice agree with what the runtime does.
        let (key, reta, target) = match &worker.rss_key[i] {
            Some(k) => {
                let reta = match cfg.reta.get(i).and_then(Option::as_ref) {
                    Some(entries) => Reta::from_entries(entries.clone()),
                    None => Reta::round_robin(cfg.reta_size.max(1), queues),
                };
                (&k[..], reta, worker.queue)
            }
            None => (
                &MS_RSS_KEY[..],
                Reta::round_robin(cfg.reta_size.max(1), worker.n_workers.max(1)),
                worker.index,
            ),
        };
        let reta = reta.map_err(|source| ConfigError::Rss { port: i, source })?;
        let toeplitz = Toeplitz::new(key).map_err(|source| ConfigError::Rss { port: i, source })?;
        ports.push(PortRt {
            mac: p.mac,
            mtu: p.mtu,
            v4,
            v6,
            steer: Steer {
                toeplitz,
                reta,
                target,
            },
        });
    }
    for (index, r) in cfg.routes.iter().enumerate() {
        let max = if r.dst.is_ipv4() { 32 } else { 128 };
        let reason = if usize::from(r.port) >= n {
            Some("no such port")
        } else if r.prefix_len > max {
            Some("prefix longer than the address")
        } else if r.gateway.is_some_and(|g| g.is_ipv4() != r.dst.is_ipv4()) {
            Some("gateway of another address family")
        } else if r
            .gateway
            .is_some_and(|g| g.is_unspecified() || g.is_multicast())
        {
            Some("gateway is not a unicast address")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(ConfigError::Route {
                index,
                dst: r.dst,
                prefix_len: r.prefix_len,
                port: r.port,
                reason,
            });
        }
    }
    let fib = Fib::new(&ports, &cfg.routes);
    Ok((ports, fib))
}

/// Our addresses: the ports', the VIPs and the full-NAT local addresses,
/// and what the cluster has this node claim ([`AddressClaims`]: without the
/// VIPs, they are ours but answered on no port).
pub(super) fn build_addrs(
    ports: &[PortRt],
    services: &Config,
    claims: &AddressClaims,
) -> HashMap<IpAddr, AddrInfo> {
    let mut m: HashMap<IpAddr, AddrInfo> = HashMap::new();
    for (i, p) in ports.iter().enumerate() {
        let addrs =
            p.v4.iter()
                .map(|(a, _)| IpAddr::V4(*a))
                .chain(p.v6.iter().map(|(a, _)| IpAddr::V6(*a)));
        for a in addrs {
            let e = m.entry(a).or_default();
            if e.port.is_none() {
                e.port = Some(i as u16);
            }
            e.answer_ports |= 1u64 << i;
        }
    }
    // VIPs and local addresses are answered on the ports whose subnets hold
    // them, or on every port if none does.
    let onlink = |a: IpAddr| -> u64 {
        let mut mask = 0u64;
        for (i, p) in ports.iter().enumerate() {
            let hit = match a {
                IpAddr::V4(x) => p.v4.iter().any(|(n, l)| route::same_net_v4(*n, x, *l)),
                IpAddr::V6(x) => p.v6.iter().any(|(n, l)| route::same_net_v6(n, &x, *l)),
            };
            if hit {
                mask |= 1u64 << i;
            }
        }
        if mask == 0 {
            if ports.len() >= 64 {
                u64::MAX
            } else {
                (1u64 << ports.len()) - 1
            }
        } else {
            mask
        }
    };
    for (_, s) in services.services() {
        let ports_mask = onlink(s.vip);
        let e = m.entry(s.vip).or_default();
        e.vip = true;
        if e.port.is_none() && claims.vips {
            e.answer_ports |= ports_mask;
        }
        if let Some(pool) = &s.local_pool {
            for &a in &pool.addrs {
                let ports_mask = onlink(a);
                let e = m.entry(a).or_default();
                e.snat = true;
                if e.port.is_none() {
                    e.answer_ports |= ports_mask;
                }
            }
        }
    }
    for &a in &claims.taken_over {
        let ports_mask = onlink(a);
        let e = m.entry(a).or_default();
        if e.port.is_none() && !e.vip {
            e.snat = true;
            e.answer_ports |= ports_mask;
        }
    }
    m
}

/// Zeroed per-service counters for `services`.
pub(super) fn fresh_counters(services: &Config) -> Vec<ServiceCounters> {
    services
        .services()
        .map(|(_, s)| ServiceCounters {
            servers: vec![ServerCounters::default(); s.servers.len()],
            ..ServiceCounters::default()
        })
        .collect()
}

/// Per-service, per-server runtime data (routes to the servers, and what
/// the fast path needs of their egress ports).
pub(super) fn build_services(services: &Config, fib: &Fib, ports: &[PortRt]) -> Vec<SvcRt> {
    services
        .services()
        .map(|(_, s)| {
            let locals: Vec<IpAddr> = s
                .local_pool
                .as_ref()
                .map_or_else(Vec::new, |p| p.all().collect());
            let local_rss_terms = ports
                .iter()
                .map(|p| {
                    let t = &p.steer.toeplitz;
                    locals.iter().map(|&a| t.addr_term(a, true)).collect()
                })
                .collect();
            SvcRt {
                xmit: Xmit::of(s.mode),
                redirect: s.redirect.is_some(),
                reset_unknown: s.reset_unknown,
                syn_proxy: s.syn_proxy,
                pickup: s.mode != ForwardMode::FullNat
                    && (s.persistence.is_some()
                        || matches!(
                            s.scheduler,
                            SchedulerKind::SourceHash
                                | SchedulerKind::Maglev
                                | SchedulerKind::Rendezvous
                        )),
                persistent: s.persistence.is_some(),
                own_locals: s.local_pool.as_ref().map_or(0, |p| p.addrs.len()),
                locals,
                local_rss_terms,
                port_min: s.local_pool.as_ref().map_or(1024, |p| p.port_min),
                port_max: s.local_pool.as_ref().map_or(65535, |p| p.port_max),
                servers: s
                    .servers
                    .iter()
                    .map(|srv| {
                        let route = fib.lookup(srv.addr);
                        let egress = route.and_then(|(p, _)| ports.get(usize::from(p)));
                        SrvRt {
                            addr: srv.addr,
                            port: srv.port,
                            keeps: srv.state.keeps_clients(),
                            route,
                            nh_hint: u32::MAX,
                            mtu: egress.map_or(0, |p| p.mtu),
                            src_mac: egress.map_or(EthernetAddress::UNSPECIFIED, |p| p.mac),
                            rss_term: egress
                                .map_or(0, |p| p.steer.toeplitz.addr_term(srv.addr, false)),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}
