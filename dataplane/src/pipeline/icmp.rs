//! ICMP errors: translation of errors about NAT'd flows (RFC 5508 §4.2:
//! the quoted datagram and the outer header are both rewritten), and the
//! errors the pipeline generates itself (time exceeded, fragmentation
//! needed, packet too big), built in place from the offending packet.
//!
//! Translation: an error quotes a packet the appliance sent (or, in DSR and
//! tunnel mode, a reply the server sent with the VIP as source). The quoted
//! flow, reversed, is a key of the connection table:
//!
//! * it matches a **reply** entry: the quote is a packet sent towards the
//!   server (error from the server side). The quote is restored to the
//!   client's packet (client → VIP), the outer header becomes VIP → client,
//!   and the error goes to the client.
//! * it matches a **forward** entry: the quote is a packet sent towards the
//!   client (error from the client side, addressed to the VIP). NAT: the
//!   quote becomes the server's packet (server → client), the outer
//!   destination the server. Full NAT: also the local address and port in
//!   the quote, and the local address as outer source. DSR and tunnel: the
//!   error goes to the server unchanged (by MAC / encapsulated), as IPVS does.
//!
//! Errors the pipeline generates are rate-limited (RFC 1812 §4.3.2.8), never
//! about ICMP errors or non-first fragments, and sent back to the Ethernet
//! source of the packet they are about.

use std::net::IpAddr;

use super::fate::{DropReason, Fate};

use super::xmit::{ConnFlags, Fwd};
use super::{AddrInfo, Output, Pipeline};
use crate::frame::{Frame, FrameAlloc};
use crate::ratelimit::RateLimit;
use crate::wire::checksum;
use crate::wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use crate::wire::rewrite::{rewrite_flow, rewrite_icmp_error};
use crate::wire::{Classified, EmbeddedFlow, FlowRewrite, FragStatus, IpProtocol, L3Kind};

use super::flow::Tuple;

/// An ICMP error the pipeline generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// Time exceeded in transit (ICMP 11/0, ICMPv6 3/0).
    TimeExceeded,
    /// Fragmentation needed and DF set, with the next-hop MTU (ICMP 3/4, RFC 1191).
    FragNeeded(u16),
    /// Packet too big, with the MTU (ICMPv6 2/0, RFC 8201).
    PacketTooBig(u32),
}

/// Most bytes of the offending packet quoted (RFC 1812 §4.3.2.3: the error
/// stays within 576 bytes; RFC 4443 §2.4(c): within the minimum IPv6 MTU).
const QUOTE_V4: usize = 576 - ipv4::HEADER_LEN - 8;
const QUOTE_V6: usize = 1280 - ipv6::HEADER_LEN - 8;

impl<F: Frame> Pipeline<F> {
    /// An ICMP or ICMPv6 error received.
    pub(super) fn icmp_error<A: FrameAlloc<Frame = F>>(
        &mut self,
        mut frame: F,
        c: &Classified,
        rx_port: u16,
        info: Option<AddrInfo>,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        let v4 = c.l3 == L3Kind::Ipv4;
        let inner = frame.bytes().get(c.l4_offset + 8..c.l3_end).and_then(|q| {
            if v4 {
                EmbeddedFlow::parse_v4(q).ok()
            } else {
                EmbeddedFlow::parse_v6(q).ok()
            }
        });
        let quoted = inner.and_then(|f| match (f.protocol, f.src_port, f.dst_port) {
            (IpProtocol::TCP | IpProtocol::UDP, Some(sp), Some(dp)) if !f.non_first_fragment => {
                Some(Tuple {
                    src: f.dst_addr,
                    dst: f.src_addr,
                    sport: dp,
                    dport: sp,
                    proto: f.protocol.0,
                })
            }
            _ => None,
        });
        let found = quoted.and_then(|t| {
            let h = self.conn_lookup(&t)?;
            let (orig, conn) = self.conn_get(&h)?;
            Some((h, orig, conn))
        });
        let Some((h, orig, conn)) = found else {
            return self.icmp_unmatched(frame, c, rx_port, info, out);
        };
        let (svc, server) = (conn.service(), conn.server());
        let xmit = ConnFlags::of(&conn).xmit;
        let Some((srv, local)) = self.svcs.get(usize::from(svc)).and_then(|s| {
            let srv = *s.servers.get(usize::from(server))?;
            let local = conn
                .local()
                .and_then(|(i, p)| s.locals.get(usize::from(i)).map(|a| (*a, p)));
            Some((srv, local))
        }) else {
            return self.icmp_unmatched(frame, c, rx_port, info, out);
        };
        let srv_port = Self::server_port(&srv, orig.dport);
        let (inner_rw, outer_rw, dest) = if h.is_reply() {
            // About a packet sent to the server: back to the client.
            let inner_rw = FlowRewrite {
                src_addr: Some(orig.src),
                dst_addr: Some(orig.dst),
                src_port: Some(orig.sport),
                dst_port: Some(orig.dport),
            };
            let outer_rw = FlowRewrite {
                src_addr: Some(orig.dst),
                dst_addr: Some(orig.src),
                ..FlowRewrite::default()
            };
            (inner_rw, outer_rw, self.fib.lookup(orig.src))
        } else if xmit.translates() {
            let Some((inner_rw, outer_rw)) = xmit.error_rewrites(srv.addr, srv_port, local) else {
                return self.icmp_unmatched(frame, c, rx_port, info, out);
            };
            (inner_rw, outer_rw, srv.route)
        } else {
            // DSR and tunnel: the error goes to the server as the client's
            // packets do.
            let fwd = Fwd {
                svc,
                server,
                orig,
                local: None,
                xmit,
            };
            self.counters.icmp_errors_to_server += 1;
            return self.send_original(frame, c, &fwd, &srv, rx_port, out, alloc);
        };
        let Some((port, nh)) = dest else {
            return Fate::Dropped(DropReason::NoRoute);
        };
        // Forwarded like any routed packet, but never answered with an error.
        if c.ttl <= 1 {
            return Fate::Dropped(DropReason::TtlExceeded);
        }
        let l3 = c.l3_offset;
        let b = frame.bytes_mut();
        let decremented = match c.l3 {
            L3Kind::Ipv4 => b
                .get_mut(l3..)
                .and_then(|b| Ipv4Packet::new_checked(b).ok())
                .is_some_and(|mut p| p.decrement_ttl().is_some()),
            _ => b
                .get_mut(l3..)
                .and_then(|b| Ipv6Packet::new_checked(b).ok())
                .is_some_and(|mut p| p.decrement_hop_limit().is_some()),
        };
        if !decremented
            || rewrite_icmp_error(b, c, &inner_rw).is_err()
            || rewrite_flow(b, c, &outer_rw).is_err()
        {
            return Fate::Dropped(DropReason::Rewrite);
        }
        self.counters.icmp_errors_translated += 1;
        self.send_to_next_hop(frame, port, nh, out, alloc, false)
    }

    /// An ICMP error about no connection of ours: the host's if it is for a
    /// port's address, dropped otherwise.
    fn icmp_unmatched(
        &mut self,
        frame: F,
        c: &Classified,
        rx_port: u16,
        info: Option<AddrInfo>,
        out: &mut Output<F>,
    ) -> Fate {
        if info.is_some_and(|i| i.port.is_some()) {
            self.give_host(frame, c, rx_port, out)
        } else {
            Fate::Dropped(DropReason::IcmpErrorNoConn)
        }
    }

    /// Turns `frame` (a packet the pipeline refused, already counted as
    /// dropped) into an ICMP error to its source and sends it back on
    /// `rx_port`. Counted as originated.
    pub(crate) fn icmp_send_error(
        &mut self,
        mut frame: F,
        c: &Classified,
        rx_port: u16,
        kind: ErrorKind,
        out: &mut Output<F>,
    ) {
        if !self.cfg.icmp_errors || c.is_icmp_error() || c.frag == FragStatus::NonFirst {
            return;
        }
        let bad_src = match c.src_addr {
            IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
        };
        if bad_src {
            return;
        }
        if !self.icmp_token() {
            self.counters.icmp_errors_rate_limited += 1;
            return;
        }
        let Some(p) = self.ports.get(usize::from(rx_port)) else {
            return;
        };
        let port_mac = p.mac;
        let our = if self.addrs.contains_key(&c.dst_addr) {
            Some(c.dst_addr)
        } else {
            p.src_for(c.src_addr)
        };
        let Some(our) = our else {
            self.counters.icmp_errors_no_source += 1;
            return;
        };
        let v4 = c.l3 == L3Kind::Ipv4;
        let l3 = c.l3_offset;
        let (hdr, max) = if v4 {
            (ipv4::HEADER_LEN, QUOTE_V4)
        } else {
            (ipv6::HEADER_LEN, QUOTE_V6)
        };
        let quote = (c.l3_end - l3).min(max);
        let icmp = l3 + hdr;
        let end = icmp + 8 + quote;
        if frame.bytes().len() < end && !frame.set_len(end) {
            self.counters.icmp_errors_no_room += 1;
            return;
        }
        frame.bytes_mut().copy_within(l3..l3 + quote, icmp + 8);
        if !frame.set_len(end) {
            self.counters.icmp_errors_no_room += 1;
            return;
        }
        let ident = self.next_ident();
        let ttl = self.cfg.ttl;
        let b = frame.bytes_mut();
        let mut src_mac = [0u8; 6];
        src_mac.copy_from_slice(&b[6..12]);
        b[..6].copy_from_slice(&src_mac);
        b[6..12].copy_from_slice(&port_mac.0);
        let (ty, code, word) = match (kind, v4) {
            (ErrorKind::TimeExceeded, true) => (11u8, 0u8, 0u32),
            (ErrorKind::TimeExceeded, false) => (3, 0, 0),
            (ErrorKind::FragNeeded(mtu), _) => (3, 4, u32::from(mtu)),
            (ErrorKind::PacketTooBig(mtu), _) => (2, 0, mtu),
        };
        let msg_len = 8 + quote;
        let ok = match (our, c.src_addr) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                protocol: IpProtocol::ICMP,
                payload_len: msg_len,
                ttl,
                tos: 0,
                ident,
                dont_frag: false,
            }
            .emit(&mut b[l3..])
            .is_ok(),
            (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::ICMPV6,
                payload_len: msg_len,
                hop_limit: ttl,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut b[l3..])
            .is_ok(),
            _ => false,
        };
        if !ok {
            return;
        }
        let m = &mut b[icmp..end];
        m[0] = ty;
        m[1] = code;
        m[2..4].copy_from_slice(&[0, 0]);
        m[4..8].copy_from_slice(&word.to_be_bytes());
        let csum = match (our, c.src_addr) {
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ph = checksum::pseudo_header_v6(&s, &d, IpProtocol::ICMPV6.0, msg_len as u32);
                checksum::l4_checksum(ph, m)
            }
            _ => checksum::checksum(m),
        };
        m[2..4].copy_from_slice(&csum.to_be_bytes());
        if let Some(q) = out.tx.get_mut(usize::from(rx_port)) {
            q.push(frame);
            self.counters.tx_originated += 1;
            self.counters.icmp_errors_sent += 1;
        }
    }

    /// Takes a token from the ICMP error rate limiter.
    fn icmp_token(&mut self) -> bool {
        let limit = RateLimit::per_second(self.cfg.icmp_rate);
        self.icmp_bucket.take(self.now, limit)
    }
}
