//! The established-flow fast path: IPv4 TCP/UDP packets of known NAT, full
//! NAT and DSR connections whose next hop is resolved.
//!
//! It does what the general path ([`Pipeline::established`] and the
//! functions it calls) does for such a packet, byte for byte and counter for
//! counter, in one pass and without re-deriving anything per packet: the
//! packet was classified by [`crate::wire::classify_ipv4_l4`] (the full
//! classification is made only if the general path takes the packet), the
//! connection is read once from the bucket the burst lookup found, the
//! server's egress port, MTU and port MAC were computed with the services
//! ([`super::SrvRt`]), the neighbour entry is checked through a cached index,
//! and the TTL decrement and the address/port rewrite update each checksum
//! incrementally at fixed offsets, folding the sum of the changes once per
//! checksum.
//!
//! A new flow is opened by the general path (service, scheduler or sticky
//! binding, connection insert); its first packet is then sent by the same
//! plan ([`Pipeline::plan_original4`], [`Pipeline::send_plan4`]) when it
//! qualifies.
//!
//! Every check comes **before** anything changes: when one fails (a TTL about
//! to expire, a packet larger than the MTU, a server that is going away, a
//! neighbour that needs a probe or a resolution, a tunnel service, IPv6, a
//! fragment...) the frame goes to the general path untouched, which then
//! handles it from the start (and counts it once).

use std::net::IpAddr;

use super::fate::Fate;
use super::xmit::{ConnFlags, Xmit};
use super::{Output, Pipeline};
use crate::conn::{Handle, Key4, ReplyRef, TcpFlags};
use crate::frame::Frame;
use crate::ids::{ServerIdx, ServiceIdx};

use crate::wire::rewrite::{Ipv4L4Rewrite, rewrite_ipv4_l4};
use crate::wire::{EthernetAddress, Ipv4L4};

/// Everything the fast path decided about a packet before changing
/// anything: where it goes, how it is rewritten, what it is counted as.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan4 {
    svc: ServiceIdx,
    server: ServerIdx,
    reply: bool,
    udp: bool,
    port: u16,
    nh_idx: u32,
    dst_mac: EthernetAddress,
    src_mac: EthernetAddress,
    rw: Option<Ipv4L4Rewrite>,
    len: u64,
}

impl<F: Frame> Pipeline<F> {
    /// Forwards `frame` (classified as `c`, of the connection `h` found by
    /// this burst's lookup) if the fast path applies, else gives it back
    /// untouched for the general path (see the module documentation).
    #[inline(always)]
    pub(super) fn fast4(
        &mut self,
        frame: F,
        c: &Ipv4L4,
        h: &Handle,
        out: &mut Output<F>,
    ) -> Result<Fate, F> {
        if !self.fast_path {
            return Err(frame);
        }
        let Some((at, key, conn)) = self.conn4.get_located(h) else {
            return Err(frame);
        };
        let (key, conn) = (*key, *conn);
        let (svc, server) = (conn.service(), conn.server());
        let Some(rt) = self.svcs.get(usize::from(svc)) else {
            return Err(frame);
        };
        let Some(srv) = rt.servers.get(usize::from(server)) else {
            return Err(frame);
        };
        // A SYN-proxied connection's sequence numbers are shifted: the
        // general path's splice does it.
        if !srv.keeps || ConnFlags::of(&conn).syn_proxy {
            return Err(frame);
        }
        let plan = if h.is_reply() {
            self.plan_reply4(c, svc, server, &key, conn.local().is_some())
        } else {
            let local = conn
                .local()
                .and_then(|(i, port)| match rt.locals.get(usize::from(i)) {
                    Some(IpAddr::V4(a)) => Some((u32::from(*a), port)),
                    _ => None,
                });
            self.plan_original4(
                c,
                svc,
                server,
                ConnFlags::of(&conn).xmit,
                local,
                key.dst_port,
            )
        };
        let Some(plan) = plan else {
            return Err(frame);
        };
        self.send_plan4(frame, c, &plan, out)?;
        // Nothing changed the table since `get_located`.
        self.conn4
            .on_packet_at(at, h.direction(), TcpFlags(c.tcp_flags.0), self.now);
        Ok(Fate::Forwarded)
    }

    /// Forwards a steady reply (`frame`, classified as `c`) from what its
    /// own entry `r` holds, without reading the connection's forward entry
    /// (see [`crate::conn`]), if the fast path applies; else gives it back
    /// untouched (then resolved to its connection for the general path).
    #[inline(always)]
    pub(super) fn fast4_reply(
        &mut self,
        frame: F,
        c: &Ipv4L4,
        r: &ReplyRef,
        out: &mut Output<F>,
    ) -> Result<Fate, F> {
        if !self.fast_path {
            return Err(frame);
        }
        let Some(s) = self.conn4.steady_reply(r, TcpFlags(c.tcp_flags.0)) else {
            return Err(frame);
        };
        if ConnFlags::from_bits(s.user_flags).syn_proxy {
            return Err(frame);
        }
        let (svc, server) = (s.service, s.server);
        let keeps = self
            .svcs
            .get(usize::from(svc))
            .and_then(|rt| rt.servers.get(usize::from(server)))
            .is_some_and(|s| s.keeps);
        if !keeps {
            return Err(frame);
        }
        let Some(plan) = self.plan_reply4(c, svc, server, &s.key, s.full_nat) else {
            return Err(frame);
        };
        self.send_plan4(frame, c, &plan, out)?;
        // Nothing changed the table since `steady_reply`.
        self.conn4.on_reply_at(s.at, self.now);
        Ok(Fate::Forwarded)
    }

    /// The plan for a client packet of service `svc` to `server` (full-NAT
    /// transmitted per `xmit`, full-NAT local address and port `local`,
    /// destination port `vport` on the VIP),
    /// if the fast path can send it: the checks of `send_original`,
    /// `route_checks` and the neighbour table, without side effects.
    #[inline(always)]
    pub(super) fn plan_original4(
        &mut self,
        c: &Ipv4L4,
        svc: ServiceIdx,
        server: ServerIdx,
        xmit: Xmit,
        local: Option<(u32, u16)>,
        vport: u16,
    ) -> Option<Plan4> {
        let udp = c.udp;
        let rt = self.svcs.get(usize::from(svc))?;
        let srv = rt.servers.get(usize::from(server))?;
        let (port, nh) = srv.route?;
        let rw = match (xmit, srv.addr) {
            (Xmit::Nat | Xmit::FullNat, IpAddr::V4(sa)) => Some(Ipv4L4Rewrite {
                dec_ttl: true,
                src_addr: local.map(|(a, _)| a),
                src_port: local.map(|(_, p)| p),
                dst_addr: Some(u32::from(sa)),
                dst_port: Some(srv.port.unwrap_or(vport)),
            }),
            (Xmit::Dsr, _) if nh == srv.addr => None,
            _ => return None,
        };
        let (mtu, src_mac, hint) = (srv.mtu, srv.src_mac, srv.nh_hint);
        self.plan4(c, svc, server, false, udp, port, nh, mtu, src_mac, hint, rw)
    }

    /// The plan for a server packet (NAT or full-NAT reply) of the
    /// connection with forward key `key`: back from the VIP, and to the
    /// client in full NAT (`fnat`).
    #[inline(always)]
    fn plan_reply4(
        &mut self,
        c: &Ipv4L4,
        svc: ServiceIdx,
        server: ServerIdx,
        key: &Key4,
        fnat: bool,
    ) -> Option<Plan4> {
        let udp = c.udp;
        let rw = Ipv4L4Rewrite {
            dec_ttl: true,
            src_addr: Some(u32::from(key.dst)),
            src_port: Some(key.dst_port),
            dst_addr: fnat.then_some(u32::from(key.src)),
            dst_port: fnat.then_some(key.src_port),
        };
        let (port, nh) = self.fib.lookup_v4(key.src)?;
        let p = self.ports.get(usize::from(port))?;
        let (mtu, src_mac, hint) = (p.mtu, p.mac, self.reply_nh_hint);
        self.plan4(
            c,
            svc,
            server,
            true,
            udp,
            port,
            IpAddr::V4(nh),
            mtu,
            src_mac,
            hint,
            Some(rw),
        )
    }

    /// The router and neighbour checks shared by both directions.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn plan4(
        &mut self,
        c: &Ipv4L4,
        svc: ServiceIdx,
        server: ServerIdx,
        reply: bool,
        udp: bool,
        port: u16,
        nh: IpAddr,
        mtu: u16,
        src_mac: EthernetAddress,
        hint: u32,
        rw: Option<Ipv4L4Rewrite>,
    ) -> Option<Plan4> {
        // A TTL about to expire and a packet too big are the general path's
        // business: it answers them with ICMP errors.
        let len = usize::from(c.l3_end.saturating_sub(c.l3_offset));
        if len > usize::from(mtu) || (rw.is_some() && c.ttl <= 1) {
            return None;
        }
        let now = self.now;
        let (nh_idx, dst_mac) = match self.neigh.peek(hint, port, nh, now) {
            Some(m) => (hint, m),
            None => {
                // Not the cached entry: find it (and cache it) if it exists.
                let i = self.neigh.index_of(port, nh)?;
                if reply {
                    self.reply_nh_hint = i;
                } else if let Some(s) = self
                    .svcs
                    .get_mut(usize::from(svc))
                    .and_then(|s| s.servers.get_mut(usize::from(server)))
                {
                    s.nh_hint = i;
                }
                (i, self.neigh.peek(i, port, nh, now)?)
            }
        };
        Some(Plan4 {
            svc,
            server,
            reply,
            udp,
            port,
            nh_idx,
            dst_mac,
            src_mac,
            rw,
            len: len as u64,
        })
    }

    /// Sends `frame` per `plan`: rewrite, Ethernet addresses, counters,
    /// queue. Gives the frame back untouched if it cannot be rewritten.
    #[inline(always)]
    pub(super) fn send_plan4(
        &mut self,
        mut frame: F,
        c: &Ipv4L4,
        plan: &Plan4,
        out: &mut Output<F>,
    ) -> Result<(), F> {
        let port = usize::from(plan.port);
        if port >= out.tx.len() {
            return Err(frame);
        }
        let b = frame.bytes_mut();
        if let Some(rw) = &plan.rw
            && !rewrite_ipv4_l4(
                b,
                usize::from(c.l3_offset),
                usize::from(c.l4_offset),
                usize::from(c.l3_end),
                plan.udp,
                rw,
            )
        {
            return Err(frame);
        }
        if let Some(h) = b.get_mut(..12) {
            h[..6].copy_from_slice(&plan.dst_mac.0);
            h[6..].copy_from_slice(&plan.src_mac.0);
        }
        self.neigh.touch(plan.nh_idx, self.now);
        if let Some(sc) = self.svc_ctr.get_mut(usize::from(plan.svc)) {
            if plan.reply {
                sc.packets_out += 1;
                sc.bytes_out += plan.len;
                if c.tcp_flags.0 & TcpFlags::RST.0 != 0 {
                    sc.server_reset(plan.server);
                }
            } else {
                sc.packets_in += 1;
                sc.bytes_in += plan.len;
                if let Some(s) = sc.servers.get_mut(usize::from(plan.server)) {
                    s.packets += 1;
                    s.bytes += plan.len;
                }
            }
        }
        if let Some(q) = out.tx.get_mut(port) {
            q.push(frame);
        }
        self.fast_forwarded += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The fast path against the general path: two pipelines with the same
    //! configuration, one with the fast path off, get the same packets and
    //! must produce the same frames, counters and connections.

    use crate::ids::{ServerIdx, ServiceIdx};
    use crate::wire::checksum;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::super::{ControlMsg, PipelineConfig, PortSpec, Route, WorkerSpec};
    use super::*;
    use crate::conn::ConnTableConfig;
    use crate::frame::{VecAlloc, VecFrame};
    use crate::model::{
        Config, ForwardMode, LocalPool, Protocol, RealServer, SchedulerKind, ServerState, Service,
    };
    use crate::time::Time;
    use crate::wire::EthernetAddress;

    const L0: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
    const L1: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 2]);
    const ROUTER: [u8; 4] = [198, 51, 100, 254];
    const SERVERS: [[u8; 4]; 2] = [[10, 1, 0, 5], [10, 1, 0, 6]];
    const FAR_SERVER: [u8; 4] = [10, 9, 0, 5];
    const CLIENTS: [[u8; 4]; 3] = [[198, 51, 100, 7], [192, 0, 2, 77], [192, 0, 2, 78]];

    fn ip(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    /// (VIP, protocol, port, mode) of the test services, by index.
    fn service_specs() -> Vec<([u8; 4], Protocol, u16, ForwardMode)> {
        use ForwardMode::*;
        vec![
            ([203, 0, 113, 10], Protocol::Tcp, 80, Nat),
            ([203, 0, 113, 10], Protocol::Udp, 53, Nat),
            ([203, 0, 113, 11], Protocol::Tcp, 80, FullNat),
            ([203, 0, 113, 12], Protocol::Tcp, 80, Dsr),
            ([203, 0, 113, 13], Protocol::Tcp, 80, Tunnel),
            ([203, 0, 113, 14], Protocol::Udp, 53, FullNat),
            // Its server is behind a gateway: DSR refuses it.
            ([203, 0, 113, 15], Protocol::Tcp, 80, Dsr),
        ]
    }

    fn pipeline(fast: bool) -> Pipeline<VecFrame> {
        let services = service_specs()
            .into_iter()
            .enumerate()
            .map(|(i, (vip, proto, port, mode))| {
                let mut s = Service::new(ip(vip), proto, Some(port));
                s.mode = mode;
                s.scheduler = SchedulerKind::RoundRobin;
                s.servers = if i == 6 {
                    vec![RealServer::new(ip(FAR_SERVER))]
                } else {
                    SERVERS.iter().map(|a| RealServer::new(ip(*a))).collect()
                };
                // A server with its own port.
                s.servers[0].port = Some(8080);
                if mode == ForwardMode::FullNat {
                    s.local_pool = Some(LocalPool {
                        addrs: vec![ip([10, 1, 0, 254]), ip([10, 1, 0, 253])],
                        port_min: 2000,
                        port_max: 2100,
                        peer_addrs: Vec::new(),
                    });
                }
                s
            })
            .collect();
        let cfg = PipelineConfig {
            ports: vec![
                PortSpec {
                    mac: L0,
                    addresses: vec![(ip([198, 51, 100, 1]), 24)],
                    mtu: 1500,
                },
                PortSpec {
                    mac: L1,
                    addresses: vec![(ip([10, 1, 0, 1]), 24)],
                    // Smaller: some packets are too big for the servers' side.
                    mtu: 1400,
                },
            ],
            services: Arc::new(Config::new(services).unwrap()),
            routes: vec![
                Route {
                    dst: ip([0, 0, 0, 0]),
                    prefix_len: 0,
                    port: 0,
                    gateway: Some(ip(ROUTER)),
                },
                Route {
                    dst: ip([10, 9, 0, 0]),
                    prefix_len: 16,
                    port: 1,
                    gateway: Some(ip([10, 1, 0, 99])),
                },
            ],
            conn4: ConnTableConfig {
                capacity: 64,
                hash_seed: 3,
                ..ConnTableConfig::default()
            },
            ..PipelineConfig::default()
        };
        let worker = WorkerSpec::software(0, 1, 2);
        let mut p = Pipeline::new(Arc::new(cfg), worker).unwrap();
        p.fast_path = fast;
        p
    }

    /// A TCP (`flags`) or UDP IPv4 frame with valid checksums, `payload`
    /// bytes of data, optionally 4 bytes of IP options, a zero UDP checksum
    /// and `pad` bytes of Ethernet padding.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        udp: bool,
        flags: u8,
        ttl: u8,
        payload: usize,
        opts: bool,
        udp_zero: bool,
        pad: usize,
    ) -> Vec<u8> {
        let hl = if opts { 24 } else { 20 };
        let l4len = if udp { 8 } else { 20 } + payload;
        let mut f = vec![0u8; 14 + hl + l4len + pad];
        f[..6].copy_from_slice(&L0.0);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x55]);
        f[12..14].copy_from_slice(&[8, 0]);
        let total = (hl + l4len) as u16;
        {
            let h = &mut f[14..14 + hl];
            h[0] = 0x40 | (hl / 4) as u8;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
            h[6] = 0x40;
            h[8] = ttl;
            h[9] = if udp { 17 } else { 6 };
            h[12..16].copy_from_slice(&src.0);
            h[16..20].copy_from_slice(&dst.0);
            if opts {
                h[20..24].copy_from_slice(&[1, 1, 1, 0]);
            }
            let c = checksum::checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let l4 = 14 + hl;
        for (i, b) in f[l4..l4 + l4len].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31);
        }
        let seg = &mut f[l4..l4 + l4len];
        seg[..2].copy_from_slice(&src.1.to_be_bytes());
        seg[2..4].copy_from_slice(&dst.1.to_be_bytes());
        if udp {
            seg[4..6].copy_from_slice(&(l4len as u16).to_be_bytes());
            seg[6..8].fill(0);
        } else {
            seg[12] = 0x50;
            seg[13] = flags;
            seg[16..18].fill(0);
        }
        let pseudo = checksum::pseudo_header_v4(
            Ipv4Addr::from(src.0),
            Ipv4Addr::from(dst.0),
            if udp { 17 } else { 6 },
            l4len as u16,
        );
        let c = checksum::l4_checksum(pseudo, seg);
        if udp {
            if !udp_zero {
                seg[6..8].copy_from_slice(&checksum::udp_nonzero(c).to_be_bytes());
            }
        } else {
            seg[16..18].copy_from_slice(&c.to_be_bytes());
        }
        for b in &mut f[l4 + l4len..] {
            *b = 0xee;
        }
        f
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A client packet to service `svc` from client `client`, port `sport`.
        Client {
            svc: usize,
            client: usize,
            sport: u16,
            flags: u8,
            ttl: u8,
            payload: usize,
            opts: bool,
            udp_zero: bool,
            pad: usize,
        },
        /// A server packet of the `conn`-th connection (in table order).
        Server {
            conn: usize,
            flags: u8,
            ttl: u8,
            payload: usize,
            udp_zero: bool,
        },
        /// Time passes (neighbours go stale, connections expire).
        Wait(u64),
        /// A server changes state.
        State {
            svc: usize,
            server: usize,
            state: ServerState,
        },
        /// The neighbours are (re)learned.
        Learn,
    }

    fn flags() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => Just(0x10u8),
            1 => Just(0x02),
            1 => Just(0x12),
            1 => Just(0x11),
            1 => Just(0x04),
            1 => Just(0x18),
            1 => any::<u8>(),
        ]
    }

    fn ttl() -> impl Strategy<Value = u8> {
        prop_oneof![6 => Just(64u8), 1 => Just(1), 1 => Just(2), 1 => Just(0)]
    }

    fn payload() -> impl Strategy<Value = usize> {
        prop_oneof![6 => 0usize..64, 1 => 1300usize..1420]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (
                0..service_specs().len(),
                0..CLIENTS.len(),
                prop_oneof![Just(40000u16), Just(40001), any::<u16>()],
                flags(),
                ttl(),
                payload(),
                prop::bool::weighted(0.1),
                prop::bool::weighted(0.2),
                prop_oneof![4 => Just(0usize), 1 => 1usize..8],
            )
                .prop_map(|(svc, client, sport, flags, ttl, payload, opts, udp_zero, pad)| {
                    Op::Client { svc, client, sport, flags, ttl, payload, opts, udp_zero, pad }
                }),
            6 => (0..8usize, flags(), ttl(), payload(), prop::bool::weighted(0.2))
                .prop_map(|(conn, flags, ttl, payload, udp_zero)| Op::Server {
                    conn,
                    flags,
                    ttl,
                    payload,
                    udp_zero
                }),
            1 => prop_oneof![Just(1u64), 0u64..40_000, Just(31_000)].prop_map(Op::Wait),
            1 => (
                0..service_specs().len(),
                0..2usize,
                prop_oneof![
                    Just(ServerState::Up),
                    Just(ServerState::Drain),
                    Just(ServerState::Down),
                    Just(ServerState::Maint)
                ]
            )
                .prop_map(|(svc, server, state)| Op::State { svc, server, state }),
            1 => Just(Op::Learn),
        ]
    }

    struct Side {
        p: Pipeline<VecFrame>,
        out: Output<VecFrame>,
        alloc: VecAlloc,
    }

    impl Side {
        fn new(fast: bool) -> Side {
            Side {
                p: pipeline(fast),
                out: Output::new(2),
                alloc: VecAlloc::default(),
            }
        }

        fn rx(
            &mut self,
            now: Time,
            port: u16,
            frames: &[Vec<u8>],
        ) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
            let mut rx: Vec<VecFrame> = frames.iter().map(|f| VecFrame::new(f)).collect();
            self.p
                .process_burst(now, port, &mut rx, &mut self.out, &mut self.alloc);
            self.take()
        }

        fn take(&mut self) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
            let tx = self
                .out
                .tx
                .iter_mut()
                .map(|q| q.drain(..).map(VecFrame::into_bytes).collect())
                .collect();
            let host = self
                .out
                .host
                .iter_mut()
                .flat_map(|q| q.drain(..))
                .map(VecFrame::into_bytes)
                .collect();
            (tx, host)
        }

        fn learn(&mut self) {
            let mut n = |port: u16, a: [u8; 4], last: u8| {
                self.p.apply(ControlMsg::Neighbor {
                    port,
                    addr: ip(a),
                    mac: EthernetAddress([2, 0, 0, 0, 9, last]),
                });
            };
            n(0, ROUTER, 1);
            n(1, SERVERS[0], 2);
            n(1, SERVERS[1], 3);
            n(1, [10, 1, 0, 99], 4);
        }
    }

    /// An address and port.
    type End = ([u8; 4], u16);

    /// Server-side tuple of a connection: (server, local or client) as the
    /// server sends it.
    fn reply_tuple(v: &super::super::ConnView, p: &Pipeline<VecFrame>) -> Option<(End, End)> {
        let svc = p.services().service(v.service)?;
        let srv = svc.servers.get(usize::from(v.server))?;
        let IpAddr::V4(sa) = srv.addr else {
            return None;
        };
        let sport = srv.port.unwrap_or(v.vip_port);
        let (da, dport) = match (v.local, v.client) {
            (Some((IpAddr::V4(la), lp)), _) => (la, lp),
            (None, IpAddr::V4(c)) => (c, v.client_port),
            _ => return None,
        };
        Some(((sa.octets(), sport), (da.octets(), dport)))
    }

    fn run(ops: &[Op]) -> Result<(), TestCaseError> {
        let mut fast = Side::new(true);
        let mut slow = Side::new(false);
        fast.learn();
        slow.learn();
        let specs = service_specs();
        let mut now = Time::from_secs(1);
        for op in ops {
            let (port, frames) = match *op {
                Op::Client {
                    svc,
                    client,
                    sport,
                    flags,
                    ttl,
                    payload,
                    opts,
                    udp_zero,
                    pad,
                } => {
                    let (vip, proto, vport, _) = specs[svc];
                    let f = frame(
                        (CLIENTS[client], sport),
                        (vip, vport),
                        proto == Protocol::Udp,
                        flags,
                        ttl,
                        payload,
                        opts,
                        udp_zero,
                        pad,
                    );
                    (0, vec![f.clone(), f])
                }
                Op::Server {
                    conn,
                    flags,
                    ttl,
                    payload,
                    udp_zero,
                } => {
                    let mut conns: Vec<_> = fast.p.connections().collect();
                    conns.sort_by_key(|v| (v.client, v.client_port, v.vip, v.vip_port, v.protocol));
                    let Some(v) = conns.get(conn % conns.len().max(1)) else {
                        continue;
                    };
                    let Some((src, dst)) = reply_tuple(v, &fast.p) else {
                        continue;
                    };
                    let f = frame(
                        src,
                        dst,
                        v.protocol == 17,
                        flags,
                        ttl,
                        payload,
                        false,
                        udp_zero,
                        0,
                    );
                    (1, vec![f])
                }
                Op::Wait(ms) => {
                    now = now + core::time::Duration::from_millis(ms);
                    fast.p.poll(now, &mut fast.out, &mut fast.alloc);
                    slow.p.poll(now, &mut slow.out, &mut slow.alloc);
                    prop_assert_eq!(fast.take(), slow.take());
                    continue;
                }
                Op::State { svc, server, state } => {
                    let msg = ControlMsg::ServerState {
                        service: ServiceIdx(svc as u16),
                        server: ServerIdx(server as u16),
                        state,
                    };
                    fast.p.apply(msg.clone());
                    slow.p.apply(msg);
                    continue;
                }
                Op::Learn => {
                    fast.learn();
                    slow.learn();
                    continue;
                }
            };
            let a = fast.rx(now, port, &frames);
            let b = slow.rx(now, port, &frames);
            prop_assert_eq!(&a, &b, "{:?}", op);
            prop_assert_eq!(fast.p.counters(), slow.p.counters(), "{:?}", op);
        }
        prop_assert_eq!(fast.p.service_counters(), slow.p.service_counters());
        let mut ca: Vec<_> = fast.p.connections().collect();
        let mut cb: Vec<_> = slow.p.connections().collect();
        ca.sort_by_key(|v| (v.client, v.client_port, v.vip, v.vip_port, v.protocol));
        cb.sort_by_key(|v| (v.client, v.client_port, v.vip, v.vip_port, v.protocol));
        prop_assert_eq!(ca, cb);
        let c = fast.p.counters();
        prop_assert_eq!(c.accounted(), c.rx_frames);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// Same frames out, same counters, same connections, fast path or not.
        #[test]
        fn fast_path_is_the_general_path(ops in prop::collection::vec(op(), 1..40)) {
            run(&ops)?;
        }
    }

    /// The fast path does take the common cases (so the property above
    /// compares something): new flows' first packets once opened, and
    /// established NAT, full-NAT and DSR packets in both directions.
    #[test]
    fn fast_path_takes_established_flows() {
        let mut s = Side::new(true);
        s.learn();
        let now = Time::from_secs(1);
        let client = CLIENTS[1];
        for (svc, sport) in [
            (0usize, 40000u16),
            (1, 40001),
            (2, 40002),
            (3, 40003),
            (5, 40004),
        ] {
            let (vip, proto, vport, _) = service_specs()[svc];
            let udp = proto == Protocol::Udp;
            let syn = frame(
                (client, sport),
                (vip, vport),
                udp,
                0x02,
                64,
                0,
                false,
                false,
                0,
            );
            let (tx, _) = s.rx(now, 0, &[syn]);
            assert_eq!(tx[1].len(), 1, "service {svc}");
        }
        // New flows are opened by the general path and sent by the fast one.
        assert_eq!(s.p.fast_forwarded, 5);
        let conns: Vec<_> = s.p.connections().collect();
        assert_eq!(conns.len(), 5);
        let mut replies = Vec::new();
        let mut requests = Vec::new();
        for v in &conns {
            let IpAddr::V4(vip) = v.vip else {
                unreachable!()
            };
            let udp = v.protocol == 17;
            requests.push(frame(
                (client, v.client_port),
                (vip.octets(), v.vip_port),
                udp,
                0x10,
                64,
                10,
                false,
                false,
                0,
            ));
            let mode = s.p.services().service(v.service).unwrap().mode;
            if mode != ForwardMode::Dsr {
                let (src, dst) = reply_tuple(v, &s.p).unwrap();
                replies.push(frame(src, dst, udp, 0x10, 64, 10, false, false, 0));
            }
        }
        let (tx, _) = s.rx(now, 1, &replies);
        assert_eq!(tx[0].len(), 4);
        let (tx, _) = s.rx(now, 0, &requests);
        assert_eq!(tx[1].len(), 5);
        assert_eq!(s.p.fast_forwarded, 5 + 9);
        assert_eq!(s.p.counters().accounted(), s.p.counters().rx_frames);
    }
}
