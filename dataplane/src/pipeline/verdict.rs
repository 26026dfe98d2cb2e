//! The decision for one classified frame, as a value ([`Verdict`]), and the
//! one step that carries it out.
//!
//! [`Pipeline::decide`] looks at the frame's classification and what the
//! burst's lookup found, and changes nothing. [`Pipeline::carry_out`] hands
//! the frame to the stage that does what the verdict says and returns its
//! [`Fate`], which the burst loop counts. A new kind of handling (an
//! answer built in place, a frame for a peer node) is a new variant here and
//! a new stage, not a new route through the burst loop.
//!
//! A known connection's unfragmented IPv4 TCP/UDP packet is sent by its
//! cached plan ([`super::fast`]) before a verdict is needed; when the plan
//! does not apply the frame comes here with its connection
//! ([`Verdict::Forward`]).

use super::*;

/// What a classified frame is to become (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A packet of a known connection: forward it on the connection (or,
    /// if its server went away, reopen or drop it).
    Forward(ConnRef),
    /// An unfragmented TCP/UDP packet to a service, without a connection:
    /// choose a server and open one.
    Open(ServiceIdx, Protocol),
    /// A TCP segment to a redirect service: answered in place (a SYN with a
    /// SYN cookie, a request with a redirect), never forwarded.
    Respond(ServiceIdx),
    /// A TCP segment without a connection to a SYN-proxied service: a SYN
    /// answered with a cookie, an ACK with a valid one opens the server's
    /// side ([`super::synproxy`]).
    SynProxy(ServiceIdx),
    /// ARP: answer a request for one of our addresses, learn the sender.
    Arp,
    /// Neighbour discovery (to one of our addresses, `info`, or to a group).
    Ndisc(Option<AddrInfo>),
    /// An ICMP error: translate it for the connection it quotes.
    IcmpError(Option<AddrInfo>),
    /// Other traffic to one of our addresses: answer an echo in place, or
    /// hand it to the host.
    Local(AddrInfo),
    /// Hand the frame to the host (the exception path) on the port it
    /// arrived on.
    Host,
    /// A packet of a flow another cluster node holds: send it there,
    /// encapsulated ([`super::cluster`]).
    ToNode(crate::cluster::NodeHop),
    /// A packet from another cluster node: decapsulate it and handle what
    /// it carries.
    FromNode,
    /// Drop it.
    Drop(DropReason),
}

impl<F: Frame> Pipeline<F> {
    /// The verdict for a frame classified as `c` whose connection lookup
    /// found `h`. Changes nothing.
    #[inline]
    pub(super) fn decide(&self, c: &Classified, h: Option<ConnRef>) -> Verdict {
        if let Some(h) = h {
            return Verdict::Forward(h);
        }
        if c.l3 == L3Kind::Arp {
            return Verdict::Arp;
        }
        // A new flow to a service, the common case here: its service is the
        // one lookup (a service's VIP is always in the address map as a VIP).
        if let Some((svc, proto)) = self.flow_service(c) {
            if self.svcs.get(usize::from(svc)).is_some_and(|s| s.redirect) {
                return Verdict::Respond(svc);
            }
            if let Some(v) = self.cluster_steer(c) {
                return v;
            }
            if proto == Protocol::Tcp
                && self.svcs.get(usize::from(svc)).is_some_and(|s| s.syn_proxy)
            {
                return Verdict::SynProxy(svc);
            }
            return Verdict::Open(svc, proto);
        }
        let info = self.addrs.get(&c.dst_addr).copied();
        if self.is_from_node(c, info) {
            return Verdict::FromNode;
        }
        // Neighbour discovery is addressed to multicast groups as well as to us.
        if c.protocol == IpProtocol::ICMPV6 && (133..=137).contains(&c.icmp_type) {
            return Verdict::Ndisc(info);
        }
        if c.is_icmp_error() {
            return Verdict::IcmpError(info);
        }
        match info {
            Some(i)
                if i.vip && (c.protocol == IpProtocol::TCP || c.protocol == IpProtocol::UDP) =>
            {
                self.vip_without_service(c, i)
            }
            Some(i) => Verdict::Local(i),
            None => Verdict::Drop(DropReason::NotForUs),
        }
    }

    /// A TCP/UDP packet to VIP `i` that [`Pipeline::flow_service`] did not
    /// take: a fragment, or a port without a service (the host's, if the
    /// VIP is also a port's address).
    #[inline]
    pub(super) fn vip_without_service(&self, c: &Classified, i: AddrInfo) -> Verdict {
        if c.frag != FragStatus::NotFragment {
            return Verdict::Drop(DropReason::Fragment);
        }
        if Protocol::from_ip_proto(c.protocol.0).is_none() {
            return Verdict::Drop(DropReason::UnsupportedProtocol);
        }
        if i.port.is_some() {
            Verdict::Host
        } else {
            Verdict::Drop(DropReason::NoService)
        }
    }

    /// Carries out verdict `v` for `frame` (classified as `c`, received on
    /// `rx_port`): the frame's fate.
    #[inline(always)]
    pub(super) fn carry_out<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Classified,
        v: Verdict,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        match v {
            Verdict::Forward(h) => self.established(frame, c, h, rx_port, out, alloc),
            Verdict::Open(svc, proto) => self.open_flow(frame, c, svc, proto, rx_port, out, alloc),
            Verdict::Respond(svc) => self.respond_redirect(frame, c, svc, rx_port, out),
            Verdict::SynProxy(svc) => self.syn_proxy(frame, c, svc, rx_port, out, alloc),
            Verdict::Arp => self.arp(frame, c, rx_port, out),
            Verdict::Ndisc(info) => self.ndisc(frame, c, rx_port, info, out),
            Verdict::IcmpError(info) => self.icmp_error(frame, c, rx_port, info, out, alloc),
            Verdict::Local(info) => self.local(frame, c, rx_port, info, out),
            Verdict::Host => self.give_host(frame, c, rx_port, out),
            Verdict::ToNode(to) => self.send_to_node(frame, c, to, rx_port, out, alloc),
            Verdict::FromNode => self.decapsulate_from_node(frame, c),
            Verdict::Drop(why) => Fate::Dropped(why),
        }
    }
}
