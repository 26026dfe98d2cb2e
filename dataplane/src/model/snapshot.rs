//! The validated, compiled snapshot ([`Config`]) and its per-service entries.

use super::*;

/// A service compiled for the dataplane: the plain [`Service`] plus the
/// precomputed scheduling data.
#[derive(Debug, Clone)]
pub struct ServiceEntry {
    pub(super) spec: Service,
    pub(super) ident: ServiceIdent,
    pub(super) seed: u64,
    pub(super) idents: Vec<u64>,
    pub(super) eligible: Vec<Backend>,
    pub(super) cum_weights: Vec<u64>,
    pub(super) maglev: Option<Maglev>,
    pub(super) swrr: Vec<ServerIdx>,
}

impl ServiceEntry {
    pub(super) fn compile(spec: Service) -> Result<ServiceEntry, MaglevError> {
        let ident = spec.ident();
        let seed = hash::service_seed(spec.vip, spec.protocol.ip_proto(), spec.port);
        let idents: Vec<u64> = spec
            .servers
            .iter()
            .map(|s| hash::server_ident(s.addr, s.port))
            .collect();
        let eligible: Vec<Backend> = spec
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_eligible())
            .map(|(i, s)| Backend {
                index: ServerIdx(i as u16),
                weight: s.weight,
                ident: idents[i],
            })
            .collect();
        let mut acc = 0u64;
        let cum_weights = eligible
            .iter()
            .map(|b| {
                acc += u64::from(b.weight);
                acc
            })
            .collect();
        let maglev = if spec.scheduler == SchedulerKind::Maglev {
            Some(Maglev::build(&eligible, spec.maglev_table_size)?)
        } else {
            None
        };
        let swrr = if spec.scheduler == SchedulerKind::WeightedRoundRobin {
            SmoothWrr::cycle(&eligible, rr::MAX_CYCLE).unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(ServiceEntry {
            spec,
            ident,
            seed,
            idents,
            eligible,
            cum_weights,
            maglev,
            swrr,
        })
    }

    /// The service as configured.
    pub fn spec(&self) -> &Service {
        &self.spec
    }

    /// The service's identity.
    pub fn ident(&self) -> ServiceIdent {
        self.ident
    }

    /// The service's hash seed (derived from its identity; equal on every core).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Servers eligible for new clients (`Up`, weight > 0), in pool order.
    pub fn eligible(&self) -> &[Backend] {
        &self.eligible
    }

    /// The smooth weighted round robin cycle over the eligible servers
    /// (server indices, one per unit of weight), when the scheduler is
    /// `wrr` and the weights sum to at most [`rr::MAX_CYCLE`]; else empty.
    pub fn swrr_cycle(&self) -> &[ServerIdx] {
        &self.swrr
    }

    /// Running sums of the eligible servers' weights (source hashing).
    pub fn cumulative_weights(&self) -> &[u64] {
        &self.cum_weights
    }

    /// The Maglev table (Maglev scheduler only).
    pub fn maglev(&self) -> Option<&Maglev> {
        self.maglev.as_ref()
    }

    /// Identity hash of server `i` (address and port).
    pub fn server_ident(&self, i: ServerIdx) -> Option<u64> {
        self.idents.get(usize::from(i)).copied()
    }

    /// Server `i`, if it exists.
    pub fn server(&self, i: ServerIdx) -> Option<&RealServer> {
        self.spec.servers.get(usize::from(i))
    }
}

/// An immutable, validated configuration snapshot shared by all cores as
/// `Arc<Config>`.
#[derive(Debug, Clone)]
pub struct Config {
    pub(super) services: Vec<Arc<ServiceEntry>>,
    pub(super) index: HashMap<ServiceIdent, ServiceIdx>,
    /// The IPv4 services again, keyed by [`ServiceIdent::packed4`]: every
    /// new flow's service is looked up here, and one machine word hashes
    /// and compares in a fraction of what the identity does.
    pub(super) index4: HashMap<u64, ServiceIdx>,
}

pub(super) fn addr_is_unusable(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_unspecified() || v.is_multicast() || v.is_broadcast(),
        IpAddr::V6(v) => v.is_unspecified() || v.is_multicast(),
    }
}

pub(super) fn validate_service(i: usize, s: &Service) -> Result<(), ConfigError> {
    if addr_is_unusable(s.vip) {
        return Err(ConfigError::InvalidVip {
            service: i,
            vip: s.vip,
        });
    }
    if s.port == Some(0) {
        return Err(ConfigError::ZeroPort { service: i });
    }
    if s.redirect.is_some() {
        if s.protocol != Protocol::Tcp {
            return Err(ConfigError::RedirectNotTcp { service: i });
        }
        if let Some(j) = s.servers.iter().position(|srv| srv.urls.is_none()) {
            return Err(ConfigError::RedirectServerWithoutUrl {
                service: i,
                server: j,
            });
        }
    }
    if s.syn_proxy
        && (s.protocol != Protocol::Tcp
            || !matches!(s.mode, ForwardMode::Nat | ForwardMode::FullNat)
            || s.redirect.is_some())
    {
        return Err(ConfigError::SynProxyNotTcpNat { service: i });
    }
    if s.servers.len() > MAX_SERVERS {
        return Err(ConfigError::TooManyServers {
            service: i,
            count: s.servers.len(),
        });
    }
    let mut seen: HashMap<(IpAddr, Option<u16>), usize> = HashMap::with_capacity(s.servers.len());
    for (j, srv) in s.servers.iter().enumerate() {
        if addr_is_unusable(srv.addr) {
            return Err(ConfigError::InvalidServerAddr {
                service: i,
                server: j,
                addr: srv.addr,
            });
        }
        if srv.port == Some(0) {
            return Err(ConfigError::ZeroServerPort {
                service: i,
                server: j,
            });
        }
        if let Some(&first) = seen.get(&(srv.addr, srv.port)) {
            return Err(ConfigError::DuplicateServer {
                service: i,
                first,
                second: j,
                addr: srv.addr,
                port: srv.port,
            });
        }
        seen.insert((srv.addr, srv.port), j);
        if let Some(b) = srv.backup {
            if usize::from(b) == j {
                return Err(ConfigError::BackupSelf {
                    service: i,
                    server: j,
                });
            }
            if usize::from(b) >= s.servers.len() {
                return Err(ConfigError::BackupOutOfRange {
                    service: i,
                    server: j,
                    backup: b,
                    pool_len: s.servers.len(),
                });
            }
        }
        if s.mode.needs_same_family() && srv.addr.is_ipv4() != s.vip.is_ipv4() {
            return Err(ConfigError::FamilyMismatch {
                service: i,
                server: j,
                mode: s.mode,
                vip: s.vip,
                addr: srv.addr,
            });
        }
    }
    match (&s.mode, &s.local_pool) {
        (ForwardMode::FullNat, None) => {
            return Err(ConfigError::FullNatWithoutLocalAddrs { service: i });
        }
        (ForwardMode::FullNat, Some(pool)) => {
            if pool.addrs.is_empty() {
                return Err(ConfigError::FullNatWithoutLocalAddrs { service: i });
            }
            if pool.addrs.len() > MAX_LOCAL_ADDRS {
                return Err(ConfigError::TooManyLocalAddrs {
                    service: i,
                    count: pool.addrs.len(),
                });
            }
            for (k, &a) in pool.addrs.iter().enumerate() {
                let reason = if addr_is_unusable(a) {
                    Some("unspecified, multicast or broadcast")
                } else if a.is_ipv4() != s.vip.is_ipv4() {
                    Some("not in the VIP's address family")
                } else if pool.addrs[..k].contains(&a) {
                    Some("listed twice")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(ConfigError::InvalidLocalAddr {
                        service: i,
                        addr: a,
                        reason,
                    });
                }
            }
            if pool.port_min == 0 || pool.port_min > pool.port_max {
                return Err(ConfigError::InvalidPortRange {
                    service: i,
                    min: pool.port_min,
                    max: pool.port_max,
                });
            }
        }
        (mode, Some(_)) => {
            return Err(ConfigError::LocalPoolUnused {
                service: i,
                mode: *mode,
            });
        }
        (_, None) => {}
    }
    if s.scheduler == SchedulerKind::Maglev {
        maglev::check_table_size(s.maglev_table_size, s.servers.len())
            .map_err(|source| ConfigError::MaglevTableSize { service: i, source })?;
    }
    if let Some(p) = &s.persistence {
        if p.timeout_minutes == 0 || p.timeout_minutes > MAX_PERSISTENCE_MINUTES {
            return Err(ConfigError::PersistenceTimeout {
                service: i,
                minutes: p.timeout_minutes,
            });
        }
        match &p.key {
            ClientKeyRule::Address => {}
            ClientKeyRule::Prefix(prefix) => {
                let max = if s.vip.is_ipv4() { 32 } else { 128 };
                if *prefix > max {
                    return Err(ConfigError::PrefixLength {
                        service: i,
                        prefix: *prefix,
                        max,
                    });
                }
            }
            ClientKeyRule::NaturalClass { networks } => {
                if !s.vip.is_ipv4() {
                    return Err(ConfigError::NaturalClassOnIpv6 { service: i });
                }
                for &n in networks {
                    let ok = natural_class(n)
                        .prefix()
                        .is_some_and(|p| mask_v4(n, p) == n);
                    if !ok {
                        return Err(ConfigError::NaturalClassNetwork {
                            service: i,
                            network: n,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

impl Config {
    /// Validates `services` without building anything.
    pub fn validate(services: &[Service]) -> Result<(), ConfigError> {
        if services.len() > MAX_SERVICES {
            return Err(ConfigError::TooManyServices {
                count: services.len(),
            });
        }
        let mut seen: HashMap<ServiceIdent, usize> = HashMap::with_capacity(services.len());
        for (i, s) in services.iter().enumerate() {
            validate_service(i, s)?;
            if let Some(&first) = seen.get(&s.ident()) {
                return Err(ConfigError::DuplicateService {
                    first,
                    second: i,
                    ident: s.ident(),
                });
            }
            seen.insert(s.ident(), i);
        }
        Ok(())
    }

    /// Validates and compiles `services` into a snapshot.
    pub fn new(services: Vec<Service>) -> Result<Config, ConfigError> {
        Config::validate(&services)?;
        let mut index = HashMap::with_capacity(services.len());
        let mut index4 = HashMap::with_capacity(services.len());
        let mut entries = Vec::with_capacity(services.len());
        for (i, s) in services.into_iter().enumerate() {
            index.insert(s.ident(), ServiceIdx(i as u16));
            if let Some(k) = ServiceIdent::packed4(s.vip, s.protocol, s.port) {
                index4.insert(k, ServiceIdx(i as u16));
            }
            let e = ServiceEntry::compile(s)
                .map_err(|source| ConfigError::MaglevTableSize { service: i, source })?;
            entries.push(Arc::new(e));
        }
        Ok(Config {
            services: entries,
            index,
            index4,
        })
    }

    /// An empty configuration.
    pub fn empty() -> Config {
        Config {
            services: Vec::new(),
            index: HashMap::new(),
            index4: HashMap::new(),
        }
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether there are no services.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Compiled service `i`.
    #[inline]
    pub fn entry(&self, i: ServiceIdx) -> Option<&ServiceEntry> {
        self.services.get(usize::from(i)).map(|a| &**a)
    }

    /// Service `i` as configured.
    pub fn service(&self, i: ServiceIdx) -> Option<&Service> {
        self.entry(i).map(ServiceEntry::spec)
    }

    /// All services with their indices.
    pub fn services(&self) -> impl Iterator<Item = (ServiceIdx, &Service)> + '_ {
        self.services
            .iter()
            .enumerate()
            .map(|(i, e)| (ServiceIdx(i as u16), e.spec()))
    }

    /// Index of the service with identity `ident`.
    pub fn find(&self, ident: &ServiceIdent) -> Option<ServiceIdx> {
        self.index.get(ident).copied()
    }

    /// Classifies a packet's destination: the service for (`vip`, `protocol`,
    /// `port`), trying the exact port first and then an all-ports service.
    #[inline]
    pub fn lookup(&self, vip: IpAddr, protocol: Protocol, port: u16) -> Option<ServiceIdx> {
        if let (Some(exact), Some(any)) = (
            ServiceIdent::packed4(vip, protocol, Some(port)),
            ServiceIdent::packed4(vip, protocol, None),
        ) {
            return self
                .index4
                .get(&exact)
                .or_else(|| self.index4.get(&any))
                .copied();
        }
        self.find(&ServiceIdent {
            vip,
            protocol,
            port: Some(port),
        })
        .or_else(|| {
            self.find(&ServiceIdent {
                vip,
                protocol,
                port: None,
            })
        })
    }

    pub(super) fn with_server(
        &self,
        service: ServiceIdx,
        server: ServerIdx,
        f: impl FnOnce(&mut RealServer),
    ) -> Result<Config, ConfigError> {
        let entry = self.entry(service).ok_or(ConfigError::NoSuchService {
            service: usize::from(service),
        })?;
        let mut spec = entry.spec().clone();
        let srv = spec
            .servers
            .get_mut(usize::from(server))
            .ok_or(ConfigError::NoSuchServer {
                service: usize::from(service),
                server: usize::from(server),
            })?;
        f(srv);
        validate_service(usize::from(service), &spec)?;
        let compiled =
            ServiceEntry::compile(spec).map_err(|source| ConfigError::MaglevTableSize {
                service: usize::from(service),
                source,
            })?;
        let mut next = self.clone();
        next.services[usize::from(service)] = Arc::new(compiled);
        Ok(next)
    }

    /// A new snapshot with server `server` of `service` in `state` (other
    /// services are shared, not copied). Indices are unchanged.
    pub fn with_server_state(
        &self,
        service: ServiceIdx,
        server: ServerIdx,
        state: ServerState,
    ) -> Result<Config, ConfigError> {
        self.with_server(service, server, |s| s.state = state)
    }

    /// A new snapshot with server `server` of `service` at `weight`.
    pub fn with_server_weight(
        &self,
        service: ServiceIdx,
        server: ServerIdx,
        weight: u16,
    ) -> Result<Config, ConfigError> {
        self.with_server(service, server, |s| s.weight = weight)
    }

    /// Maps the indices of `old` onto `new` by identity: services by (VIP,
    /// protocol, port), servers by (address, port), local addresses by address.
    pub fn reload_map(old: &Config, new: &Config) -> ReloadMap {
        let services = old
            .services
            .iter()
            .map(|o| {
                let new_index = new.find(&o.ident())?;
                let n = new.entry(new_index)?;
                let mut by_ident: HashMap<(IpAddr, Option<u16>), ServerIdx> =
                    HashMap::with_capacity(n.spec.servers.len());
                for (j, s) in n.spec.servers.iter().enumerate() {
                    by_ident.insert((s.addr, s.port), ServerIdx(j as u16));
                }
                let servers = o
                    .spec
                    .servers
                    .iter()
                    .map(|s| by_ident.get(&(s.addr, s.port)).copied())
                    .collect();
                let new_locals: Vec<IpAddr> = n
                    .spec
                    .local_pool
                    .as_ref()
                    .map_or_else(Vec::new, |p| p.all().collect());
                let local_addrs = o
                    .spec
                    .local_pool
                    .iter()
                    .flat_map(LocalPool::all)
                    .map(|a| new_locals.iter().position(|b| *b == a).map(|k| k as u16))
                    .collect();
                let persistence_changed = o.spec.persistence.as_ref().map(|p| &p.key)
                    != n.spec.persistence.as_ref().map(|p| &p.key);
                Some(ServiceMap {
                    new_index,
                    servers,
                    local_addrs,
                    persistence_changed,
                })
            })
            .collect();
        ReloadMap { services }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::empty()
    }
}
