//! What the appliance answers itself, in place (the request frame becomes
//! the reply): ARP for its addresses (RFC 826), neighbour solicitations
//! (RFC 4861 §7.2.4), ICMP and ICMPv6 echo (RFC 792, RFC 4443 §4.2); and
//! the exception path for the rest of the traffic to the ports' addresses.
//!
//! "Our addresses" are the ports' own addresses (answered on their port),
//! and the VIPs and full-NAT local addresses (answered on the ports whose
//! subnets hold them, or on every port if none does).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::fate::{DropReason, Fate};
use super::neigh::{Learn, solicited_node};
use super::{AddrInfo, Event, Output, Pipeline};
use crate::frame::Frame;
use crate::wire::checksum;
use crate::wire::ethernet::EthernetAddress;
use crate::wire::icmpv4::Icmpv4Packet;
use crate::wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use crate::wire::ipv4::Ipv4Repr;
use crate::wire::ipv6::Ipv6Repr;
use crate::wire::ndisc::{NdiscRepr, NeighborFlags};
use crate::wire::{ArpOperation, ArpPacket, ArpRepr, Classified, FragStatus, IpProtocol, L3Kind};

/// All-nodes multicast (RFC 4291 §2.7.1).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

fn eth_src(b: &[u8]) -> EthernetAddress {
    let mut m = [0u8; 6];
    if let Some(s) = b.get(6..12) {
        m.copy_from_slice(s);
    }
    EthernetAddress(m)
}

/// Addresses the Ethernet header of a frame answered in place back to its
/// sender, from `port_mac`.
pub(super) fn back_to_sender(b: &mut [u8], port_mac: EthernetAddress) {
    let sender = eth_src(b);
    b[..6].copy_from_slice(&sender.0);
    b[6..12].copy_from_slice(&port_mac.0);
}

fn v4(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
    }
}

impl<F: Frame> Pipeline<F> {
    /// Learns (or refreshes) neighbour `addr` on `port` from a frame
    /// received there (see `NeighTable::learn` for `create`, `confirm` and
    /// `override_mac`), and publishes a new binding for the other workers.
    fn learn_neighbor(
        &mut self,
        port: u16,
        addr: IpAddr,
        mac: EthernetAddress,
        how: Learn,
        out: &mut Output<F>,
    ) -> bool {
        let learned = self.neigh.learn(
            port,
            addr,
            mac,
            self.now,
            how,
            &self.ports,
            Some(out),
            &mut self.counters,
        );
        if learned {
            self.push_event(Event::Neighbor { port, addr, mac });
        }
        learned
    }

    fn answers(&self, addr: IpAddr, port: u16) -> Option<AddrInfo> {
        self.addrs
            .get(&addr)
            .copied()
            .filter(|i| (i.answer_ports >> port) & 1 == 1)
    }

    /// An ARP packet: learn the sender (RFC 826 merge rule), answer requests
    /// for our addresses in place.
    pub(super) fn arp(
        &mut self,
        mut frame: F,
        c: &Classified,
        rx_port: u16,
        out: &mut Output<F>,
    ) -> Fate {
        let parsed = frame
            .bytes()
            .get(c.l3_offset..)
            .ok_or(crate::wire::Error::TruncatedArp)
            .and_then(|b| ArpPacket::new_checked(b).and_then(|p| ArpRepr::parse(&p)));
        let repr = match parsed {
            Ok(r) => r,
            Err(e) => return Fate::Dropped(DropReason::Wire(e)),
        };
        let sha = repr.source_hardware_addr;
        let spa = repr.source_protocol_addr;
        let tpa = IpAddr::V4(repr.target_protocol_addr);
        if sha.is_multicast()
            || sha == EthernetAddress::UNSPECIFIED
            || (!spa.is_unspecified() && self.addrs.contains_key(&IpAddr::V4(spa)))
        {
            return Fate::Dropped(DropReason::ArpBadSender);
        }
        let target = self.answers(tpa, rx_port);
        let request = repr.operation == ArpOperation::REQUEST;
        let mut learned = false;
        if !spa.is_unspecified() {
            // Create an entry only when the packet is addressed to us (a
            // request for our address, or a reply to us).
            let create = target.is_some() && !repr.is_gratuitous();
            let how = Learn {
                create,
                confirm: true,
                override_mac: true,
            };
            learned = self.learn_neighbor(rx_port, IpAddr::V4(spa), sha, how, out);
        }
        match target {
            Some(_) if request && !repr.is_gratuitous() => {
                let mac = self.ports[usize::from(rx_port)].mac;
                let reply = repr.reply(mac);
                let l3 = c.l3_offset;
                let b = frame.bytes_mut();
                b[..6].copy_from_slice(&sha.0);
                b[6..12].copy_from_slice(&mac.0);
                match b.get_mut(l3..).map(|a| reply.emit(a)) {
                    Some(Ok(_)) => {
                        self.counters.arp_replies += 1;
                        self.emit(frame, rx_port, out, true)
                    }
                    _ => Fate::Dropped(DropReason::NoRoom),
                }
            }
            // A reply to one of the ports' addresses may answer the host.
            Some(i) if !request && i.port == Some(rx_port) && self.cfg.host_path => {
                self.give_host(frame, c, rx_port, out)
            }
            _ if learned => Fate::Consumed,
            _ => Fate::Dropped(DropReason::ArpOther),
        }
    }

    /// A neighbour discovery message: validated (RFC 4861 §7.1), learned
    /// from, solicitations for our addresses answered in place.
    pub(super) fn ndisc(
        &mut self,
        mut frame: F,
        c: &Classified,
        rx_port: u16,
        info: Option<AddrInfo>,
        out: &mut Output<F>,
    ) -> Fate {
        let (src, dst) = (v6(c.src_addr), v6(c.dst_addr));
        let repr = {
            let b = frame.bytes();
            let Some(msg) = b.get(c.l4_offset..c.l3_end) else {
                return Fate::Dropped(DropReason::NdpInvalid);
            };
            let valid_hdr = c.ttl == 255
                && c.icmp_code == 0
                && Icmpv6Packet::new_checked(msg).is_ok_and(|p| p.verify_checksum(&src, &dst));
            match valid_hdr.then(|| NdiscRepr::parse(msg)) {
                Some(Ok(r)) => r,
                _ => {
                    return Fate::Dropped(DropReason::NdpInvalid);
                }
            }
        };
        match repr {
            NdiscRepr::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                let unspecified = src.is_unspecified();
                let sn = solicited_node(&target_addr);
                // RFC 4861 §7.1.1: from the unspecified address, only to the
                // solicited-node group and without a link-layer address.
                if unspecified && (dst != sn || lladdr.is_some()) {
                    return Fate::Dropped(DropReason::NdpInvalid);
                }
                if dst != sn && dst != target_addr {
                    return Fate::Dropped(DropReason::NdpOther);
                }
                let target = self.answers(IpAddr::V6(target_addr), rx_port);
                let mut learned = false;
                if let (false, Some(mac)) = (unspecified, lladdr) {
                    let how = Learn {
                        create: target.is_some(),
                        confirm: false,
                        override_mac: true,
                    };
                    learned = self.learn_neighbor(rx_port, IpAddr::V6(src), mac, how, out);
                }
                if target.is_none() {
                    return if learned {
                        Fate::Consumed
                    } else {
                        Fate::Dropped(DropReason::NdpOther)
                    };
                }
                let mac = self.ports[usize::from(rx_port)].mac;
                let Some(advert) = repr.advert_for(mac, unspecified) else {
                    return Fate::Dropped(DropReason::NdpInvalid);
                };
                let (to, to_mac) = if unspecified {
                    (ALL_NODES, EthernetAddress::from_ipv6_multicast(&ALL_NODES))
                } else {
                    (src, lladdr.unwrap_or_else(|| eth_src(frame.bytes())))
                };
                let na = Icmpv6Repr::Ndisc(advert);
                let l3 = c.l3_offset;
                let len = l3 + 40 + na.len();
                if !frame.set_len(len) {
                    return Fate::Dropped(DropReason::NoRoom);
                }
                let ip = Ipv6Repr {
                    src_addr: target_addr,
                    dst_addr: to,
                    next_header: IpProtocol::ICMPV6,
                    payload_len: na.len(),
                    hop_limit: 255,
                    traffic_class: 0,
                    flow_label: 0,
                };
                let b = frame.bytes_mut();
                b[..6].copy_from_slice(&to_mac.0);
                b[6..12].copy_from_slice(&mac.0);
                let ok = ip.emit(&mut b[l3..]).is_ok()
                    && na.emit(&mut b[l3 + 40..], &target_addr, &to).is_ok();
                if ok {
                    self.counters.ndp_adverts += 1;
                    self.emit(frame, rx_port, out, true)
                } else {
                    Fate::Dropped(DropReason::NoRoom)
                }
            }
            NdiscRepr::NeighborAdvert {
                flags,
                target_addr,
                lladdr,
            } => {
                // RFC 4861 §7.1.2: a multicast advertisement is not solicited.
                if dst.is_multicast() && flags.contains(NeighborFlags::SOLICITED) {
                    return Fate::Dropped(DropReason::NdpInvalid);
                }
                let mut learned = false;
                // RFC 4861 §7.2.5: an advertisement without a target link-layer
                // address (Linux omits it when answering a unicast probe) confirms
                // an entry that already has one.
                let lladdr = lladdr.or_else(|| self.neigh.lookup(rx_port, IpAddr::V6(target_addr)));
                if let Some(mac) = lladdr
                    && !self.addrs.contains_key(&IpAddr::V6(target_addr))
                {
                    // A solicited advertisement answers a solicitation one of the
                    // workers sent; it may reach another worker (the host spreads
                    // frames over the queues), which creates the entry and
                    // publishes it to the one that asked.
                    let solicited = flags.contains(NeighborFlags::SOLICITED);
                    let how = Learn {
                        create: solicited && !dst.is_multicast(),
                        confirm: solicited,
                        override_mac: flags.contains(NeighborFlags::OVERRIDE),
                    };
                    learned = self.learn_neighbor(rx_port, IpAddr::V6(target_addr), mac, how, out);
                }
                if info.is_some_and(|i| i.port == Some(rx_port)) && self.cfg.host_path {
                    self.give_host(frame, c, rx_port, out)
                } else if learned {
                    Fate::Consumed
                } else {
                    Fate::Dropped(DropReason::NdpOther)
                }
            }
            // Router discovery and redirects are the host's business.
            _ => {
                let to_port = info.is_some_and(|i| i.port == Some(rx_port));
                if (to_port || dst.is_multicast()) && self.cfg.host_path {
                    self.give_host(frame, c, rx_port, out)
                } else {
                    Fate::Dropped(DropReason::NdpOther)
                }
            }
        }
    }

    /// Traffic to one of our addresses that is not a service's: echo
    /// requests are answered, the rest of what is for a port's address goes
    /// to the host.
    pub(super) fn local(
        &mut self,
        frame: F,
        c: &Classified,
        rx_port: u16,
        info: AddrInfo,
        out: &mut Output<F>,
    ) -> Fate {
        match (c.l3, c.protocol, c.icmp_type) {
            (L3Kind::Ipv4, IpProtocol::ICMP, 8) => self.echo4(frame, c, rx_port, out),
            (L3Kind::Ipv6, IpProtocol::ICMPV6, 128) => self.echo6(frame, c, rx_port, out),
            _ if info.port.is_some() => self.give_host(frame, c, rx_port, out),
            (_, IpProtocol::TCP | IpProtocol::UDP, _) if info.snat => {
                self.fnat_orphan(&frame, c, rx_port)
            }
            (_, IpProtocol::ICMP | IpProtocol::ICMPV6, _) => Fate::Dropped(DropReason::IcmpOther),
            _ => Fate::Dropped(DropReason::UnsupportedProtocol),
        }
    }

    /// A packet to a full-NAT local address with no connection here: count
    /// whether RSS sent it to the wrong worker.
    fn fnat_orphan(&mut self, frame: &F, c: &Classified, rx_port: u16) -> Fate {
        if let Some(p) = self.ports.get(usize::from(rx_port))
            && let Some(owner) = super::route::owner(&p.steer, frame.bytes(), c)
            && owner != p.steer.target
        {
            self.counters.fnat_reply_wrong_worker += 1;
        }
        Fate::Dropped(DropReason::FnatNoConn)
    }

    /// Why an echo request is not answered, if it is not.
    fn echo_refused(&self, c: &Classified) -> Option<DropReason> {
        if c.frag != FragStatus::NotFragment {
            return Some(DropReason::Fragment);
        }
        let bad_src = match c.src_addr {
            IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
        };
        if bad_src || c.l4_len() < 8 {
            return Some(DropReason::IcmpOther);
        }
        None
    }

    /// ICMP echo reply in place: options dropped, addresses swapped, TTL reset.
    fn echo4(&mut self, mut frame: F, c: &Classified, rx_port: u16, out: &mut Output<F>) -> Fate {
        if let Some(why) = self.echo_refused(c) {
            return Fate::Dropped(why);
        }
        let l3 = c.l3_offset;
        let icmp_len = c.l4_len();
        let end = l3 + 20 + icmp_len;
        let (tos, ident) = {
            let b = frame.bytes_mut();
            let tos = b[l3 + 1];
            let ident = u16::from_be_bytes([b[l3 + 4], b[l3 + 5]]);
            if c.l4_offset > l3 + 20 {
                b.copy_within(c.l4_offset..c.l3_end, l3 + 20);
            }
            (tos, ident)
        };
        if !frame.set_len(end) {
            return Fate::Dropped(DropReason::NoRoom);
        }
        let ip = Ipv4Repr {
            src_addr: v4(c.dst_addr),
            dst_addr: v4(c.src_addr),
            protocol: IpProtocol::ICMP,
            payload_len: icmp_len,
            ttl: self.cfg.ttl,
            tos,
            ident,
            dont_frag: false,
        };
        let mac = self.ports[usize::from(rx_port)].mac;
        let b = frame.bytes_mut();
        back_to_sender(b, mac);
        let ok = ip.emit(&mut b[l3..]).is_ok()
            && Icmpv4Packet::new_checked(&mut b[l3 + 20..end])
                .and_then(|mut p| p.make_echo_reply())
                .is_ok();
        if ok {
            self.counters.echo_replies += 1;
            self.emit(frame, rx_port, out, true)
        } else {
            Fate::Dropped(DropReason::IcmpOther)
        }
    }

    /// ICMPv6 echo reply in place: extension headers dropped, addresses
    /// swapped (the pseudo-header sum does not change), hop limit reset.
    fn echo6(&mut self, mut frame: F, c: &Classified, rx_port: u16, out: &mut Output<F>) -> Fate {
        if let Some(why) = self.echo_refused(c) {
            return Fate::Dropped(why);
        }
        let l3 = c.l3_offset;
        let icmp_len = c.l4_len();
        let end = l3 + 40 + icmp_len;
        let tc = {
            let b = frame.bytes_mut();
            let tc = ((b[l3] & 0x0f) << 4) | (b[l3 + 1] >> 4);
            if c.l4_offset > l3 + 40 {
                b.copy_within(c.l4_offset..c.l3_end, l3 + 40);
            }
            tc
        };
        if !frame.set_len(end) {
            return Fate::Dropped(DropReason::NoRoom);
        }
        let ip = Ipv6Repr {
            src_addr: v6(c.dst_addr),
            dst_addr: v6(c.src_addr),
            next_header: IpProtocol::ICMPV6,
            payload_len: icmp_len,
            hop_limit: self.cfg.ttl,
            traffic_class: tc,
            flow_label: 0,
        };
        let mac = self.ports[usize::from(rx_port)].mac;
        let b = frame.bytes_mut();
        back_to_sender(b, mac);
        if ip.emit(&mut b[l3..]).is_err() {
            return Fate::Dropped(DropReason::IcmpOther);
        }
        let m = &mut b[l3 + 40..end];
        let old = u16::from_be_bytes([m[0], m[1]]);
        let new = 0x8100 | (old & 0x00ff);
        let csum = u16::from_be_bytes([m[2], m[3]]);
        let csum = checksum::update16(csum, old, new);
        m[..2].copy_from_slice(&new.to_be_bytes());
        m[2..4].copy_from_slice(&csum.to_be_bytes());
        self.counters.echo_replies += 1;
        self.emit(frame, rx_port, out, true)
    }
}
