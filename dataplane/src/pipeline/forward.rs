//! Forwarding: opening connections and rewriting their packets for NAT,
//! full NAT, DSR and IP-in-IP tunnels.
//!
//! * NAT and full NAT behave as a router: the TTL / hop limit is decremented
//!   (an expired one gets an ICMP time exceeded back), packets larger than
//!   the egress MTU get fragmentation needed / packet too big (IPv4 without
//!   DF is dropped: the pipeline does not fragment).
//! * DSR rewrites only the Ethernet header: the IP packet reaches the server
//!   unchanged, TTL included (the server answers the client directly).
//! * The tunnel prepends an outer IPv4 (or IPv6) header from the egress
//!   port's address to the server (RFC 2003 / RFC 2473); the inner packet is
//!   unchanged except for the MSS of SYNs, clamped so that full segments fit
//!   the egress MTU once encapsulated. An inner packet that does not fit gets
//!   fragmentation needed / packet too big with the MTU left after the outer
//!   header (path MTU discovery is what keeps the client's segments small:
//!   the server's SYN-ACK, which carries its MSS, does not pass here).

use std::net::IpAddr;

use super::fate::{DropReason, Fate};
use super::flow::{ConnRef, Tuple, tuple_free};
use super::icmp::ErrorKind;
use super::verdict::Verdict;
use super::xmit::{ConnFlags, Fwd, Xmit};
use super::{Output, Pipeline, SrvRt};
use crate::conn::{InsertError, NewConn};
use crate::frame::{Frame, FrameAlloc};
use crate::model::{Protocol, ServerIdx, ServiceIdx};
use crate::rss::ReplyFlow;
use crate::sched::PickKey;
use crate::sticky::StickyDecision;
use crate::wire::ethernet::EtherType;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::rewrite::rewrite_flow;
use crate::wire::tcp::TcpPacket;
use crate::wire::{Classified, FragStatus, IpProtocol, Ipv4L4, L3Kind, TcpFlags, tunnel};

impl<F: Frame> Pipeline<F> {
    /// The server's port for a connection whose client sent to `vport`.
    #[inline]
    pub(crate) fn server_port(srv: &SrvRt, vport: u16) -> u16 {
        srv.port.unwrap_or(vport)
    }

    /// A frame of a known connection.
    pub(super) fn established<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Classified,
        h: ConnRef,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        let Some((orig, conn)) = self.conn_get(&h) else {
            // Cannot happen (the handle comes from this burst's lookup);
            // handle the frame as if it had no connection.
            return self.no_conn(frame, c, rx_port, out, alloc);
        };
        let (svc, server) = (conn.service(), conn.server());
        let srv = self
            .svcs
            .get(usize::from(svc))
            .and_then(|s| s.servers.get(usize::from(server)))
            .copied();
        let Some(srv) = srv.filter(|s| s.keeps) else {
            // The server went down (or away): close the connection. A client
            // packet may open a new one; a server packet is dropped.
            self.conn_close(&h);
            if h.is_reply() {
                return Fate::Dropped(DropReason::ServerDown);
            }
            return self.no_conn(frame, c, rx_port, out, alloc);
        };
        let flags = ConnFlags::of(&conn);
        let frame = if flags.syn_proxy {
            // The SYN proxy's connection: its sequence numbers shifted (or
            // the server's SYN-ACK answered), see `synproxy.rs`.
            match self.splice(frame, c, &h, &conn, rx_port, out) {
                Ok(f) => f,
                Err(fate) => return fate,
            }
        } else {
            frame
        };
        self.conn_on_packet(&h, c.tcp_flags.0);
        let local = self.local_of(&conn);
        let fwd = Fwd {
            svc,
            server,
            orig,
            local,
            xmit: flags.xmit,
        };
        if h.is_reply() {
            self.send_reply(frame, c, &fwd, rx_port, out, alloc)
        } else {
            self.send_original(frame, c, &fwd, &srv, rx_port, out, alloc)
        }
    }

    /// A client frame whose connection is gone: decided anew, as a frame
    /// without a connection to a VIP.
    fn no_conn<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Classified,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        let v = match self.addrs.get(&c.dst_addr) {
            Some(i) if i.vip => match self.flow_service(c) {
                Some((svc, proto)) => Verdict::Open(svc, proto),
                None => self.vip_without_service(c, *i),
            },
            _ => Verdict::Drop(DropReason::ServerDown),
        };
        self.carry_out(frame, c, v, rx_port, out, alloc)
    }

    /// The service of a frame without a connection, if it is an unfragmented
    /// TCP or UDP frame to one: then it may open a connection
    /// ([`Pipeline::open_flow`]) without more ado.
    #[inline]
    pub(super) fn flow_service(&self, c: &Classified) -> Option<(ServiceIdx, Protocol)> {
        if c.frag != FragStatus::NotFragment {
            return None;
        }
        let proto = Protocol::from_ip_proto(c.protocol.0)?;
        let svc = self.services.lookup(c.dst_addr, proto, c.dst_port)?;
        Some((svc, proto))
    }

    /// A TCP/UDP frame without a connection to service `svc`: opens a
    /// connection if it can. A stage of its own (never inlined into the
    /// verdict's dispatch, whose other arms it would crowd out).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(super) fn open_flow<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Classified,
        svc: ServiceIdx,
        proto: Protocol,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        let Some(rt) = self.svcs.get(usize::from(svc)) else {
            return Fate::Dropped(DropReason::NoService);
        };
        let (xmit, pickup, persistent, reset, syn_proxy) = (
            rt.xmit,
            rt.pickup,
            rt.persistent,
            rt.reset_unknown,
            rt.syn_proxy,
        );
        let syn = c.tcp_flags.is_syn_only();
        if proto == Protocol::Tcp && c.tcp_flags.contains(TcpFlags::SYN | TcpFlags::FIN) {
            // Never a connection request (RFC 9293 §3.10.7.2 ignores a SYN's
            // FIN): a scan or an attempt to confuse state; opens nothing.
            return Fate::Dropped(DropReason::TcpSynFin);
        }
        if proto == Protocol::Tcp && !syn {
            // RFC 9293: nothing but a SYN opens a connection; a flow picked up
            // mid-stream must reach the server it had, so only a
            // deterministic choice may do it.
            if c.tcp_flags.contains(TcpFlags::RST) || !(self.cfg.tcp_pickup && pickup) {
                if reset && !c.tcp_flags.contains(TcpFlags::RST) {
                    return self.reset_unknown(frame, c, rx_port, out);
                }
                return Fate::Dropped(DropReason::TcpNoConn);
            }
        }
        // Choose the server: the sticky binding, else the scheduler.
        let mut tracked = false;
        let server = if persistent {
            match self
                .sticky
                .resolve(&self.services, svc, c.src_addr, self.now)
            {
                StickyDecision::Pinned {
                    server, tracked: t, ..
                } => {
                    tracked = t;
                    Some(server)
                }
                StickyDecision::NotSticky => self.pick(svc, c),
                StickyDecision::NoServer => None,
            }
        } else {
            self.pick(svc, c)
        };
        let Some(server) = server else {
            if let Some(c) = self.svc_ctr.get_mut(usize::from(svc)) {
                c.no_server += 1;
            }
            return Fate::Dropped(DropReason::NoServer);
        };
        let srv = self
            .svcs
            .get(usize::from(svc))
            .and_then(|s| s.servers.get(usize::from(server)))
            .copied();
        let Some(srv) = srv.filter(|s| s.route.is_some()) else {
            self.release_sticky(tracked, svc, c.src_addr);
            return Fate::Dropped(DropReason::NoRoute);
        };
        let orig = Tuple::sent(c);
        let sport = Self::server_port(&srv, c.dst_port);
        // Full NAT: the port the picker would give, on the next local
        // address, is taken as a guess. Its reply bucket is fetched with
        // the other new-flow work and only then checked, so that the
        // check's cache miss is not waited for on its own.
        let mut guessed = false;
        let mut local = None;
        if xmit.needs_local() {
            let l = match self.fnat_guess(svc, &srv, sport) {
                Some(g) => {
                    guessed = true;
                    Some(g)
                }
                None => self.fnat_local(svc, &srv, sport, c.protocol.0),
            };
            let Some(l) = l else {
                self.release_sticky(tracked, svc, c.src_addr);
                return Fate::Dropped(DropReason::FnatNoPort);
            };
            local = Some(l);
        }
        let reply = xmit.reply_tuple(&orig, srv.addr, sport, local.map(|(_, a, p)| (a, p)));
        // The reply entry's bucket is where the insert misses the cache:
        // its key is known only now. Fetch it while the plan is made.
        let reply_hash = match &reply {
            Some(r) => self.conn_prefetch(r),
            None => 0,
        };
        // The fast path's plan for the first packet (IPv4, next hop resolved,
        // ...), made before the insert: it changes nothing, and nothing read
        // after the insert then waits for the insert's stores to reach the
        // cache.
        let c4 = Ipv4L4::of(c).filter(|_| self.fast_path);
        let mut plan = c4.as_ref().and_then(|c4| {
            let local4 = match local {
                Some((_, IpAddr::V4(a), p)) => Some((u32::from(a), p)),
                _ => None,
            };
            self.plan_original4(c4, svc, server, xmit, local4, c.dst_port)
        });
        let mut new = NewConn {
            service: svc,
            server,
            local: local.map(|(i, _, p)| (i, p)),
            user_flags: ConnFlags {
                sticky: tracked,
                xmit,
                syn_proxy,
            }
            .bits(),
        };
        // A full-NAT guess is checked by the insert itself.
        let mut inserted = self.conn_insert(
            &orig,
            reply.as_ref().map(|r| (r, reply_hash)),
            new,
            c.tcp_flags.0,
            guessed,
        );
        if let (true, Some((i, _, lport))) = (guessed, local) {
            match inserted {
                Ok(()) => self.fnat_taken(&srv, i, lport, svc),
                Err(InsertError::ReplyExists) => {
                    // The guess is taken: search on (the walk skips it).
                    let Some((idx, la, lport)) = self.fnat_local(svc, &srv, sport, c.protocol.0)
                    else {
                        self.release_sticky(tracked, svc, c.src_addr);
                        return Fate::Dropped(DropReason::FnatNoPort);
                    };
                    local = Some((idx, la, lport));
                    new.local = Some((idx, lport));
                    // The plan was for the guess: this frame takes the slow path.
                    plan = None;
                    let r = reply.map(|r| Tuple {
                        dst: la,
                        dport: lport,
                        ..r
                    });
                    let rh = r.as_ref().map_or(0, |r| self.conn_prefetch(r));
                    inserted = self.conn_insert(
                        &orig,
                        r.as_ref().map(|r| (r, rh)),
                        new,
                        c.tcp_flags.0,
                        false,
                    );
                }
                Err(_) => {}
            }
        }
        match inserted {
            Ok(()) => {
                self.sched.conn_opened(svc, server);
                self.counters.conn_created += 1;
                self.count_conn(svc, server);
                // A SYN-proxied connection's record waits for the server's
                // answer, which sets its sequence shift (`synproxy`).
                if self.flow_events && !syn_proxy {
                    let client = (c.src_addr, c.src_port);
                    let l = local.map(|(_, a, p)| (a, p));
                    self.flow_event(true, (svc, server), client, c.dst_port, l, None);
                }
                if proto == Protocol::Tcp && !syn {
                    self.counters.conn_picked_up += 1;
                }
                let frame = match (plan, &c4) {
                    (Some(plan), Some(c4)) => match self.send_plan4(frame, c4, &plan, out) {
                        Ok(()) => return Fate::Forwarded,
                        Err(f) => f,
                    },
                    _ => frame,
                };
                let fwd = Fwd {
                    svc,
                    server,
                    orig,
                    local: local.map(|(_, a, p)| (a, p)),
                    xmit,
                };
                self.send_original(frame, c, &fwd, &srv, rx_port, out, alloc)
            }
            Err(InsertError::Exists(h)) => {
                // Opened by an earlier frame of this burst.
                self.release_sticky(tracked, svc, c.src_addr);
                self.established(frame, c, orig.conn_ref(h), rx_port, out, alloc)
            }
            Err(InsertError::ReplyExists | InsertError::ReplyIsForward) => {
                self.release_sticky(tracked, svc, c.src_addr);
                Fate::Dropped(DropReason::ReplyConflict)
            }
            Err(_) => {
                self.release_sticky(tracked, svc, c.src_addr);
                Fate::Dropped(DropReason::ConnFull)
            }
        }
    }

    fn pick(&mut self, svc: ServiceIdx, c: &Classified) -> Option<ServerIdx> {
        let key = PickKey {
            src: c.src_addr,
            src_port: c.src_port,
            dst_port: c.dst_port,
        };
        self.sched.pick(&self.services, svc, &key)
    }

    fn release_sticky(&mut self, tracked: bool, svc: ServiceIdx, client: IpAddr) {
        if tracked {
            self.sticky.release(&self.services, svc, client, self.now);
        }
    }

    /// The local address and port [`Pipeline::fnat_local`] would choose
    /// first, unchecked: the next local address, and its picker's next
    /// port steered to this worker. `None` when that is not simple (no
    /// local address, or this worker's queue gets no RSS traffic on the
    /// egress port).
    fn fnat_guess(
        &self,
        svc: ServiceIdx,
        srv: &SrvRt,
        server_port: u16,
    ) -> Option<(u16, IpAddr, u16)> {
        // While tuples are quarantined, every choice is checked against them.
        if self.quarantine.active() {
            return None;
        }
        let (egress, _) = srv.route?;
        let rt = self.svcs.get(usize::from(svc))?;
        let port = self.ports.get(usize::from(egress))?;
        let picker = self.pickers.get(usize::from(egress))?;
        // The cursor is below the count unless a reload shrank the pool.
        let n = rt.own_locals;
        let i = match self.fnat_cursor {
            c if c < n => c,
            _ if n == 0 => return None,
            c => c % n,
        };
        let la = *rt.locals.get(i)?;
        let v6 = srv.addr.is_ipv6();
        if la.is_ipv6() != v6 {
            return None;
        }
        // The reply hash's terms that do not depend on the port, two of
        // them kept with the service (see `Toeplitz::reply_base`).
        let t = &port.steer.toeplitz;
        let local_term = *rt.local_rss_terms.get(usize::from(egress))?.get(i)?;
        let base = srv.rss_term ^ local_term ^ t.sport_term(v6, server_port);
        let p = picker
            .candidate_from(t, &port.steer.reta, base, v6, rt.port_min..=rt.port_max)
            .ok()?;
        Some((i as u16, la, p))
    }

    /// Hands out a guess of [`Pipeline::fnat_guess`] found free: the cursors
    /// move on as [`Pipeline::fnat_local`] would have moved them.
    fn fnat_taken(&mut self, srv: &SrvRt, i: u16, lport: u16, svc: ServiceIdx) {
        let (Some(rt), Some((egress, _))) = (self.svcs.get(usize::from(svc)), srv.route) else {
            return;
        };
        if let Some(picker) = self.pickers.get_mut(usize::from(egress)) {
            picker.advance_past(lport, rt.port_min..=rt.port_max);
        }
        let next = usize::from(i) + 1;
        self.fnat_cursor = if next < rt.own_locals { next } else { 0 };
    }

    /// Chooses a full-NAT local address and port: the port makes the reply
    /// (server → local address) hash to this worker's queue on the port it
    /// comes back on, and its reply tuple is free.
    fn fnat_local(
        &mut self,
        svc: ServiceIdx,
        srv: &SrvRt,
        server_port: u16,
        proto: u8,
    ) -> Option<(u16, IpAddr, u16)> {
        let (egress, _) = srv.route?;
        let Pipeline {
            svcs,
            ports,
            pickers,
            conn4,
            conn6,
            fnat_cursor,
            counters,
            quarantine,
            now,
            ..
        } = self;
        let rt = svcs.get(usize::from(svc))?;
        let port = ports.get(usize::from(egress))?;
        let picker = pickers.get_mut(usize::from(egress))?;
        let n = rt.own_locals;
        let steered = port.steer.reta.serves(port.steer.target);
        for k in 0..n {
            let i = (*fnat_cursor + k) % n;
            let la = rt.locals[i];
            let mut free = |p: u16| {
                let t = Tuple {
                    src: srv.addr,
                    dst: la,
                    sport: server_port,
                    dport: p,
                    proto,
                };
                if quarantine.holds(&t, *now) {
                    counters.fnat_port_quarantined += 1;
                    return false;
                }
                tuple_free(conn4, conn6, &t)
            };
            let picked = if steered {
                picker
                    .pick(
                        &port.steer.toeplitz,
                        &port.steer.reta,
                        &ReplyFlow {
                            server_addr: srv.addr,
                            server_port,
                            local_addr: la,
                        },
                        rt.port_min..=rt.port_max,
                        &mut free,
                    )
                    .ok()
            } else {
                // This worker's queue gets no RSS traffic on that port: any
                // free port will do (replies are steered by the runtime, if at all).
                let span = u32::from(rt.port_max.saturating_sub(rt.port_min)) + 1;
                let start = u32::from(picker.cursor().saturating_sub(rt.port_min)) % span;
                let found = (0..span)
                    .map(|j| rt.port_min + ((start + j) % span) as u16)
                    .find(|&p| free(p));
                if let Some(p) = found {
                    counters.fnat_port_unsteered += 1;
                    picker.advance_past(p, rt.port_min..=rt.port_max);
                }
                found
            };
            if let Some(p) = picked {
                *fnat_cursor = (i + 1) % n;
                return Some((i as u16, la, p));
            }
        }
        None
    }

    /// Client → server.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_original<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Classified,
        fwd: &Fwd,
        srv: &SrvRt,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        let len = (c.l3_end - c.l3_offset) as u64;
        if let Some(sc) = self.svc_ctr.get_mut(usize::from(fwd.svc)) {
            sc.packets_in += 1;
            sc.bytes_in += len;
            if let Some(s) = sc.servers.get_mut(usize::from(fwd.server)) {
                s.packets += 1;
                s.bytes += len;
            }
        }
        let Some((port, nh)) = srv.route else {
            return Fate::Dropped(DropReason::NoRoute);
        };
        match fwd.xmit {
            Xmit::Nat | Xmit::FullNat => {
                let mut frame = match self.route_checks(frame, c, port, rx_port, out) {
                    Ok(frame) => frame,
                    Err(fate) => return fate,
                };
                let sport = Self::server_port(srv, fwd.orig.dport);
                let rw = Xmit::original_rewrite(srv.addr, sport, fwd.local);
                if rewrite_flow(frame.bytes_mut(), c, &rw).is_err() {
                    return Fate::Dropped(DropReason::Rewrite);
                }
                self.send_to_server(frame, port, nh, fwd.svc, fwd.server, out, alloc)
            }
            Xmit::Dsr => {
                if nh != srv.addr {
                    return Fate::Dropped(DropReason::DsrNotOnlink);
                }
                match self.mtu_check(frame, c, port, 0, rx_port, out) {
                    Ok(frame) => {
                        self.send_to_server(frame, port, nh, fwd.svc, fwd.server, out, alloc)
                    }
                    Err(fate) => fate,
                }
            }
            Xmit::Tunnel => match self.encapsulate(frame, c, srv.addr, port, rx_port, out, None) {
                Ok(frame) => self.send_to_server(frame, port, nh, fwd.svc, fwd.server, out, alloc),
                Err(fate) => fate,
            },
        }
    }

    /// Server → client (NAT and full NAT).
    fn send_reply<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Classified,
        fwd: &Fwd,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        if let Some(sc) = self.svc_ctr.get_mut(usize::from(fwd.svc)) {
            sc.packets_out += 1;
            sc.bytes_out += (c.l3_end - c.l3_offset) as u64;
            if c.protocol == IpProtocol::TCP && c.tcp_flags.contains(TcpFlags::RST) {
                sc.server_reset(fwd.server);
            }
        }
        let Some((port, nh)) = self.fib.lookup(fwd.orig.src) else {
            return Fate::Dropped(DropReason::NoRoute);
        };
        let mut frame = match self.route_checks(frame, c, port, rx_port, out) {
            Ok(frame) => frame,
            Err(fate) => return fate,
        };
        let rw = fwd.xmit.reply_rewrite(&fwd.orig);
        if rewrite_flow(frame.bytes_mut(), c, &rw).is_err() {
            return Fate::Dropped(DropReason::Rewrite);
        }
        self.send_to_next_hop(frame, port, nh, out, alloc, false)
    }

    /// Router checks before a NAT rewrite: TTL / hop limit, then MTU.
    fn route_checks(
        &mut self,
        frame: F,
        c: &Classified,
        egress: u16,
        rx_port: u16,
        out: &mut Output<F>,
    ) -> Result<F, Fate> {
        // RFC 1812 §5.2.1 order: TTL check, MTU check, then decrement.
        if c.ttl <= 1 {
            self.icmp_send_error(frame, c, rx_port, ErrorKind::TimeExceeded, out);
            return Err(Fate::Dropped(DropReason::TtlExceeded));
        }
        let mut frame = self.mtu_check(frame, c, egress, 0, rx_port, out)?;
        let l3 = c.l3_offset;
        let ok = match c.l3 {
            L3Kind::Ipv4 => frame
                .bytes_mut()
                .get_mut(l3..)
                .and_then(|b| Ipv4Packet::new_checked(b).ok())
                .is_some_and(|mut p| p.decrement_ttl().is_some()),
            _ => frame
                .bytes_mut()
                .get_mut(l3..)
                .and_then(|b| Ipv6Packet::new_checked(b).ok())
                .is_some_and(|mut p| p.decrement_hop_limit().is_some()),
        };
        if !ok {
            return Err(Fate::Dropped(DropReason::Rewrite));
        }
        Ok(frame)
    }

    /// Drops (with fragmentation needed / packet too big when allowed) a
    /// packet that would exceed `egress`'s MTU once `overhead` bytes are added.
    fn mtu_check(
        &mut self,
        frame: F,
        c: &Classified,
        egress: u16,
        overhead: usize,
        rx_port: u16,
        out: &mut Output<F>,
    ) -> Result<F, Fate> {
        let mtu = self
            .ports
            .get(usize::from(egress))
            .map_or(0, |p| usize::from(p.mtu));
        let len = c.l3_end - c.l3_offset;
        if len + overhead <= mtu {
            return Ok(frame);
        }
        let df = match c.l3 {
            L3Kind::Ipv4 => frame
                .bytes()
                .get(c.l3_offset + 6)
                .is_some_and(|b| b & 0x40 != 0),
            _ => true,
        };
        if df {
            let room = mtu.saturating_sub(overhead) as u32;
            let kind = match c.l3 {
                L3Kind::Ipv4 => ErrorKind::FragNeeded(room.min(0xffff) as u16),
                _ => ErrorKind::PacketTooBig(room),
            };
            self.icmp_send_error(frame, c, rx_port, kind, out);
        }
        Err(Fate::Dropped(DropReason::TooBig))
    }

    /// Encapsulates the IP packet of `frame` for `server` (leaving by
    /// `egress`); `None` if the frame was dropped or answered instead.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encapsulate(
        &mut self,
        mut frame: F,
        c: &Classified,
        server: IpAddr,
        egress: u16,
        rx_port: u16,
        out: &mut Output<F>,
        gue: Option<crate::wire::gue::GueRepr>,
    ) -> Result<F, Fate> {
        let gue_len = gue.map_or(0, |_| crate::wire::gue::HEADER_LEN);
        let overhead = gue_len
            + match server {
                IpAddr::V4(_) => tunnel::IPV4_OVERHEAD,
                IpAddr::V6(_) => tunnel::IPV6_OVERHEAD,
            };
        let Some(src) = self
            .ports
            .get(usize::from(egress))
            .and_then(|p| p.src_for(server))
        else {
            return Err(Fate::Dropped(DropReason::NoSourceAddr));
        };
        let mtu = self
            .ports
            .get(usize::from(egress))
            .map_or(0, |p| usize::from(p.mtu));
        // Clamp the MSS of SYNs so that full segments fit once encapsulated.
        if c.protocol == IpProtocol::TCP
            && c.tcp_flags.contains(TcpFlags::SYN)
            && c.frag == FragStatus::NotFragment
        {
            let ip_hdr = c.l4_offset - c.l3_offset;
            let max = mtu.saturating_sub(overhead + ip_hdr + 20);
            let max = u16::try_from(max).unwrap_or(u16::MAX);
            let seg = frame.bytes_mut().get_mut(c.l4_offset..c.l3_end);
            if let Some(seg) = seg
                && let Ok(mut t) = TcpPacket::new_checked(seg)
                && let Ok(Some(_)) = t.clamp_mss(max)
            {
                self.counters.mss_clamped += 1;
            }
        }
        let mut frame = self.mtu_check(frame, c, egress, overhead, rx_port, out)?;
        let eth = c.l3_offset;
        // Drop any Ethernet padding, then open room between the Ethernet and IP headers.
        if !frame.set_len(c.l3_end) || !frame.prepend(overhead) {
            return Err(Fate::Dropped(DropReason::NoRoom));
        }
        let ident = self.next_ident();
        let ttl = self.cfg.ttl;
        let b = frame.bytes_mut();
        b.copy_within(overhead..overhead + eth, 0);
        let ethertype = match server {
            IpAddr::V4(_) => EtherType::IPV4,
            IpAddr::V6(_) => EtherType::IPV6,
        };
        b[eth - 2..eth].copy_from_slice(&ethertype.0.to_be_bytes());
        let (head, inner) = b.split_at_mut(eth + overhead);
        if let Some(g) = gue {
            let ip_len = overhead - gue_len;
            let r = g
                .emit(&mut head[eth + ip_len..], inner.len())
                .and_then(|()| {
                    let (outer, udp) = head[eth..].split_at_mut(ip_len);
                    let udp_len = udp.len() + inner.len();
                    tunnel::emit_udp_outer(outer, src, server, udp_len, inner, ttl, ident)
                });
            return match r {
                Ok(_) => Ok(frame),
                Err(_) => Err(Fate::Dropped(DropReason::Rewrite)),
            };
        }
        let r = match (src, server) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                tunnel::emit_ipv4_outer(&mut head[eth..], s, d, inner, ttl, ident)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                tunnel::emit_ipv6_outer(&mut head[eth..], s, d, inner, ttl, 0)
            }
            _ => Err(crate::wire::Error::InvalidArgument),
        };
        if r.is_err() {
            return Err(Fate::Dropped(DropReason::Rewrite));
        }
        Ok(frame)
    }

    pub(crate) fn next_ident(&mut self) -> u16 {
        self.ip_ident = self.ip_ident.wrapping_add(1);
        self.ip_ident
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{
        EtherType, EthernetAddress, EthernetRepr, FlowRewrite, Ipv4Repr, Ipv6Repr, TcpRepr, UdpRepr,
    };
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn frame(
        v6: bool,
        tcp: bool,
        udp_zero: bool,
        a: [u8; 16],
        b: [u8; 16],
        ports: (u16, u16),
        payload: &[u8],
    ) -> Vec<u8> {
        let (src, dst) = if v6 {
            (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))
        } else {
            (
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
            )
        };
        let seg = if tcp { 20 } else { 8 } + payload.len();
        let ip = if v6 { 40 } else { 20 };
        let mut f = vec![0u8; 14 + ip + seg];
        EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            vlan: None,
            ethertype: if v6 { EtherType::IPV6 } else { EtherType::IPV4 },
        }
        .emit(&mut f)
        .unwrap();
        let proto = if tcp {
            IpProtocol::TCP
        } else {
            IpProtocol::UDP
        };
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                protocol: proto,
                payload_len: seg,
                ttl: 64,
                tos: 0,
                ident: 7,
                dont_frag: false,
            }
            .emit(&mut f[14..])
            .unwrap(),
            (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: proto,
                payload_len: seg,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut f[14..])
            .unwrap(),
            _ => unreachable!(),
        };
        let l4 = &mut f[14 + ip..];
        if tcp {
            TcpRepr {
                src_port: ports.0,
                dst_port: ports.1,
                seq_number: 1,
                ack_number: 2,
                flags: crate::wire::TcpFlags::ACK,
                window_len: 100,
                urgent_at: 0,
                mss: None,
                window_scale: None,
                sack_permitted: false,
                timestamps: None,
                payload,
            }
            .emit(l4, &src, &dst)
            .unwrap();
        } else {
            UdpRepr {
                src_port: ports.0,
                dst_port: ports.1,
                payload,
            }
            .emit(l4, &src, &dst)
            .unwrap();
            if udp_zero {
                l4[6] = 0;
                l4[7] = 0;
            }
        }
        f
    }

    proptest! {
        /// The fast path writes exactly what the wire layer's general rewrite writes.
        #[test]
        fn fast_rewrite_matches_wire_rewrite(
            v6 in any::<bool>(),
            tcp in any::<bool>(),
            udp_zero in any::<bool>(),
            a in any::<[u8; 16]>(),
            b in any::<[u8; 16]>(),
            ports in any::<(u16, u16)>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            na in proptest::option::of(any::<[u8; 16]>()),
            nb in proptest::option::of(any::<[u8; 16]>()),
            np in (proptest::option::of(any::<u16>()), proptest::option::of(any::<u16>())),
        ) {
            let f = frame(v6, tcp, udp_zero, a, b, ports, &payload);
            let c = crate::wire::classify(&f).unwrap();
            let addr = |x: [u8; 16]| if v6 {
                IpAddr::V6(Ipv6Addr::from(x))
            } else {
                IpAddr::V4(Ipv4Addr::new(x[0], x[1], x[2], x[3]))
            };
            let rw = FlowRewrite {
                src_addr: na.map(addr),
                dst_addr: nb.map(addr),
                src_port: np.0,
                dst_port: np.1,
            };
            let mut fast = f.clone();
            let mut slow = f.clone();
            prop_assert!(rewrite_flow(&mut fast, &c, &rw).is_ok());
            prop_assert!(crate::wire::rewrite::rewrite_flow_general(&mut slow, &c, &rw).is_ok());
            prop_assert_eq!(fast, slow);
        }
    }
}
