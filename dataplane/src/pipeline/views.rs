//! What the control thread reads of a worker: counters per service and server, connections, sticky bindings, neighbours; and connections it installs.

use super::*;

/// Whether a connection in `state` has ended and only lingers for late
/// segments (TCP TIME_WAIT after FINs, CLOSE after a reset).
fn conn_ended(state: crate::conn::ConnState) -> bool {
    matches!(
        state,
        crate::conn::ConnState::TimeWait | crate::conn::ConnState::Close
    )
}

/// Traffic of one service on this worker ([`Pipeline::service_counters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceCounters {
    /// Client packets of the service's connections received.
    pub packets_in: u64,
    /// Their bytes (IP length).
    pub bytes_in: u64,
    /// Server packets of the service's connections received (NAT and full NAT).
    pub packets_out: u64,
    /// Their bytes (IP length).
    pub bytes_out: u64,
    /// Connections opened.
    pub conns: u64,
    /// New clients dropped because no server was available.
    pub no_server: u64,
    /// Per server, in pool order.
    pub servers: Vec<ServerCounters>,
}

impl ServiceCounters {
    /// Counts a reset that server `server` sent (passive health).
    #[inline]
    pub(crate) fn server_reset(&mut self, server: ServerIdx) {
        if let Some(s) = self.servers.get_mut(usize::from(server)) {
            s.resets += 1;
        }
    }
}

/// Traffic of one real server on this worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerCounters {
    /// Connections opened to it.
    pub conns: u64,
    /// Client packets sent its way.
    pub packets: u64,
    /// Their bytes (IP length).
    pub bytes: u64,
    /// Its TCP connections that expired before it answered the SYN (NAT
    /// and full NAT, where its replies are seen): passive health.
    pub syn_unanswered: u64,
    /// Resets it sent on its connections (NAT and full NAT): passive health.
    pub resets: u64,
}

/// A connection to install with [`Pipeline::install_connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSpec {
    /// Client address.
    pub client: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// VIP.
    pub vip: IpAddr,
    /// VIP port.
    pub vip_port: u16,
    /// IP protocol (6 or 17).
    pub protocol: u8,
    /// Server index in the service's pool.
    pub server: ServerIdx,
    /// Full NAT: the local address (of the service's pool) and port.
    pub local: Option<(IpAddr, u16)>,
    /// SYN proxy: the shift between the server's and the client's
    /// sequence spaces ([`ConnRecord::seq_shift`]).
    pub seq_shift: Option<u32>,
}

/// Why [`Pipeline::install_connection`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InstallConnError {
    /// No service for the VIP, protocol and port.
    #[error("no such service")]
    NoService,
    /// No such server in the service's pool.
    #[error("no such server")]
    NoServer,
    /// A local address outside the service's pool, or missing for full NAT.
    #[error("local address missing or not in the service's pool")]
    BadLocal,
    /// The connection already exists.
    #[error("connection exists")]
    Exists,
    /// Its reply tuple is in use.
    #[error("reply tuple in use")]
    ReplyConflict,
    /// The connection table is full.
    #[error("connection table full")]
    Full,
}

/// A connection as the admin CLI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnView {
    /// Client address.
    pub client: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// VIP.
    pub vip: IpAddr,
    /// VIP port.
    pub vip_port: u16,
    /// IP protocol.
    pub protocol: u8,
    /// Service index.
    pub service: ServiceIdx,
    /// Server index.
    pub server: ServerIdx,
    /// Server address (if the server still exists).
    pub server_addr: Option<IpAddr>,
    /// Full-NAT local address and port.
    pub local: Option<(IpAddr, u16)>,
    /// Made by the SYN proxy.
    pub syn_proxy: bool,
    /// SYN proxy: the shift between the server's and the client's sequence
    /// spaces, once the server answered.
    pub seq_shift: Option<u32>,
    /// TCP state.
    pub state: crate::conn::ConnState,
    /// Expiry if idle.
    pub expires: Time,
}

/// The view of the connection keyed by `k` (its forward key), with what
/// the SYN proxy keeps for it (`kept`: the cookie, then the shift).
fn conn_view<K: crate::conn::FlowKey>(
    svc: &Config,
    k: &K,
    c: &crate::conn::Conn,
    kept: Option<u32>,
) -> ConnView {
    let syn_proxy = ConnFlags::of(c).syn_proxy;
    let answered = c.state() != crate::conn::ConnState::SynSent;
    let (client, vip) = (k.src_addr(), k.dst_addr());
    let (client_port, vip_port, protocol) = (k.src_port(), k.dst_port(), k.proto());
    let spec = svc.service(c.service());
    ConnView {
        client,
        client_port,
        vip,
        vip_port,
        protocol,
        service: c.service(),
        server: c.server(),
        server_addr: spec.and_then(|s| s.servers.get(usize::from(c.server())).map(|s| s.addr)),
        local: c.local().and_then(|(i, port)| {
            spec.and_then(|s| s.local_pool.as_ref())
                .and_then(|p| p.all().nth(usize::from(i)))
                .map(|a| (a, port))
        }),
        syn_proxy,
        seq_shift: kept.filter(|_| syn_proxy && answered),
        state: c.state(),
        expires: c.expires(),
    }
}

impl<F: Frame> Pipeline<F> {
    /// Connections on this worker (both families).
    pub fn connection_count(&self) -> usize {
        self.conn4.len() + self.conn6.len()
    }

    /// Every connection on this worker.
    pub fn connections(&self) -> impl Iterator<Item = ConnView> + '_ {
        let (svc, kept) = (&self.services, &self.seq_shifts);
        let v4 = self
            .conn4
            .iter()
            .map(move |(k, c)| conn_view(svc, k, &c, kept.get(true, c.id())));
        let v6 = self
            .conn6
            .iter()
            .map(move |(k, c)| conn_view(svc, k, &c, kept.get(false, c.id())));
        v4.chain(v6)
    }

    /// Installs an established connection without its packets: a flow
    /// synchronised from a cluster peer, or preloaded by a benchmark. The
    /// service is found by (`vip`, `protocol`, `vip_port`); the reply entry
    /// is built for the service's mode. Counted in `conn_installed`.
    pub fn install_connection(
        &mut self,
        now: Time,
        spec: &ConnSpec,
    ) -> Result<(), InstallConnError> {
        self.now = now;
        let proto = crate::model::Protocol::from_ip_proto(spec.protocol)
            .ok_or(InstallConnError::NoService)?;
        let svc = self
            .services
            .lookup(spec.vip, proto, spec.vip_port)
            .ok_or(InstallConnError::NoService)?;
        let rt = self
            .svcs
            .get(usize::from(svc))
            .ok_or(InstallConnError::NoService)?;
        let srv = *rt
            .servers
            .get(usize::from(spec.server))
            .ok_or(InstallConnError::NoServer)?;
        if spec.client.is_ipv4() != spec.vip.is_ipv4() {
            return Err(InstallConnError::NoService);
        }
        let sport = srv.port.unwrap_or(spec.vip_port);
        let xmit = rt.xmit;
        let local = match (xmit.needs_local(), spec.local) {
            (true, Some((a, p))) => {
                let i = rt
                    .locals
                    .iter()
                    .position(|x| *x == a)
                    .ok_or(InstallConnError::BadLocal)?;
                Some((i as u16, a, p))
            }
            (true, None) | (false, Some(_)) => return Err(InstallConnError::BadLocal),
            (false, None) => None,
        };
        let orig = flow::Tuple {
            src: spec.client,
            dst: spec.vip,
            sport: spec.client_port,
            dport: spec.vip_port,
            proto: spec.protocol,
        };
        let reply = xmit.reply_tuple(&orig, srv.addr, sport, local.map(|(_, a, p)| (a, p)));
        let new = crate::conn::NewConn {
            service: svc,
            server: spec.server,
            local: local.map(|(i, _, p)| (i, p)),
            user_flags: ConnFlags {
                sticky: false,
                xmit,
                syn_proxy: spec.seq_shift.is_some(),
            }
            .bits(),
        };
        // An ACK: the connection starts established.
        let reply = reply.as_ref().map(|r| (r, self.conn_prefetch(r)));
        match self.conn_insert(&orig, reply, new, 0x10, false) {
            Ok(()) => {
                if let Some(shift) = spec.seq_shift
                    && let Some(h) = self.conn_lookup(&orig)
                    && let Some(slot) = self.shift_slot(&h)
                {
                    *slot = shift;
                }
                self.sched.conn_opened(svc, spec.server);
                self.counters.conn_installed += 1;
                self.count_conn(svc, spec.server);
                Ok(())
            }
            Err(crate::conn::InsertError::Exists(_)) => Err(InstallConnError::Exists),
            Err(
                crate::conn::InsertError::ReplyExists | crate::conn::InsertError::ReplyIsForward,
            ) => Err(InstallConnError::ReplyConflict),
            Err(_) => Err(InstallConnError::Full),
        }
    }

    /// Every sticky binding on this worker, its
    /// [`active`](StickyBinding::active) the number of this worker's open
    /// connections using it: those that hold the binding and have not
    /// ended (a TCP connection in TIME_WAIT or CLOSE has ended; it still
    /// holds the binding, whose idle timer starts when the last connection
    /// leaves the table). Walks the connection tables: for the management
    /// API, not the packet path.
    pub fn sticky_bindings(&self) -> impl Iterator<Item = StickyBinding> + '_ {
        // The open connections holding a binding, by (service, client key).
        let mut open: HashMap<(ServiceIdx, ClientKey), u32> = HashMap::new();
        let mut count = |service: ServiceIdx, client: IpAddr, c: &crate::conn::Conn| {
            if !ConnFlags::of(c).sticky || conn_ended(c.state()) {
                return;
            }
            let rule = self
                .services
                .entry(service)
                .and_then(|e| e.spec().persistence.as_ref());
            if let Some(key) = rule.and_then(|p| crate::sticky::client_key(&p.key, client)) {
                *open.entry((service, key)).or_default() += 1;
            }
        };
        for (k, c) in self.conn4.iter() {
            count(c.service(), k.src.into(), &c);
        }
        for (k, c) in self.conn6.iter() {
            count(c.service(), k.src.into(), &c);
        }
        self.sticky.iter().map(move |mut b| {
            b.active = open.get(&(b.service, b.key)).copied().unwrap_or(0);
            b
        })
    }

    /// Open connections (entries of this worker's tables) per server, by
    /// service index and pool order: the schedulers' counts, read without
    /// walking the tables.
    pub fn open_per_server(&self) -> Vec<Vec<u32>> {
        self.svc_ctr
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (0..c.servers.len())
                    .map(|j| self.sched.conns(ServiceIdx(i as u16), ServerIdx(j as u16)))
                    .collect()
            })
            .collect()
    }

    /// Every neighbour entry on this worker.
    pub fn neighbors(&self) -> impl Iterator<Item = Neighbor> + '_ {
        self.neigh.iter(self.now)
    }

    /// The known MAC of `addr` on `port`, if any.
    pub fn neighbor(&self, port: u16, addr: IpAddr) -> Option<EthernetAddress> {
        self.neigh.lookup(port, addr)
    }
}
