//! Announcing the appliance's addresses when they appear: a gratuitous ARP
//! (an ARP announcement, RFC 5227 §2.3) for each IPv4 address and an
//! unsolicited neighbour advertisement (RFC 4861 §7.2.6) for each IPv6
//! address, on every port that answers for it — the ports' own addresses,
//! the VIPs and the full-NAT local addresses. Neighbours and switches learn
//! the appliance's MAC at once, after a start, a takeover or a VIP added by
//! a reload, instead of at their next resolution.
//!
//! With [`PipelineConfig::announce`], worker 0 queues every address when it
//! is built and every new one when a configuration adds it; [`Pipeline::poll`]
//! sends what is queued. Each frame is counted in `tx_originated` and
//! `addresses_announced`.

use super::*;
use crate::wire::icmpv6::Icmpv6Repr;
use crate::wire::ipv6::Ipv6Repr;
use crate::wire::ndisc::{NdiscRepr, NeighborFlags};
use crate::wire::{ArpOperation, ArpRepr, EtherType, EthernetRepr};

/// All-nodes multicast (RFC 4291), where unsolicited advertisements go.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

impl<F: Frame> Pipeline<F> {
    /// Queues for announcement the addresses of `self.addrs` that `old`
    /// did not have (or answered on fewer ports), if this worker announces.
    pub(super) fn queue_new_addresses(&mut self, old: &HashMap<IpAddr, AddrInfo>) {
        if !self.cfg.announce || self.worker.index != 0 {
            return;
        }
        let mut new: Vec<IpAddr> = self
            .addrs
            .iter()
            .filter(|(a, i)| {
                old.get(*a)
                    .is_none_or(|o| i.answer_ports & !o.answer_ports != 0)
            })
            .map(|(a, _)| *a)
            .collect();
        new.sort_unstable();
        self.announce_pending.extend(new);
    }

    /// Sends the queued announcements; returns how many frames were sent.
    pub(super) fn announce_queued<A: FrameAlloc<Frame = F>>(
        &mut self,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> usize {
        let pending = core::mem::take(&mut self.announce_pending);
        let mut sent = 0;
        for addr in &pending {
            let Some(info) = self.addrs.get(addr).copied() else {
                continue;
            };
            for (port, p) in self.ports.iter().enumerate() {
                if (info.answer_ports >> port) & 1 == 0 {
                    continue;
                }
                let Some(q) = out.tx.get_mut(port) else {
                    continue;
                };
                let Some(mut f) = alloc.alloc() else {
                    self.counters.alloc_failed += 1;
                    continue;
                };
                let ok = match addr {
                    IpAddr::V4(a) => gratuitous_arp(&mut f, p.mac, *a),
                    IpAddr::V6(a) => unsolicited_na(&mut f, p.mac, *a),
                };
                if ok {
                    q.push(f);
                    self.counters.tx_originated += 1;
                    self.counters.addresses_announced += 1;
                    sent += 1;
                } else {
                    self.counters.alloc_failed += 1;
                }
            }
        }
        sent
    }
}

/// An ARP announcement of `addr` at `mac`: a broadcast request whose sender
/// and target are both `addr` (RFC 5227 §2.3).
fn gratuitous_arp<F: Frame>(f: &mut F, mac: EthernetAddress, addr: Ipv4Addr) -> bool {
    if !f.set_len(14 + 28) {
        return false;
    }
    let b = f.bytes_mut();
    let eth = EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        vlan: None,
        ethertype: EtherType::ARP,
    };
    let arp = ArpRepr {
        operation: ArpOperation::REQUEST,
        source_hardware_addr: mac,
        source_protocol_addr: addr,
        target_hardware_addr: EthernetAddress::UNSPECIFIED,
        target_protocol_addr: addr,
    };
    eth.emit(b).is_ok() && arp.emit(&mut b[14..]).is_ok()
}

/// An unsolicited neighbour advertisement of `addr` at `mac` to all nodes,
/// with the override flag (RFC 4861 §7.2.6).
fn unsolicited_na<F: Frame>(f: &mut F, mac: EthernetAddress, addr: Ipv6Addr) -> bool {
    let na = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NeighborFlags::OVERRIDE,
        target_addr: addr,
        lladdr: Some(mac),
    });
    if !f.set_len(14 + 40 + na.len()) {
        return false;
    }
    let b = f.bytes_mut();
    let eth = EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::from_ipv6_multicast(&ALL_NODES),
        vlan: None,
        ethertype: EtherType::IPV6,
    };
    let ip = Ipv6Repr {
        src_addr: addr,
        dst_addr: ALL_NODES,
        next_header: IpProtocol::ICMPV6,
        payload_len: na.len(),
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0,
    };
    eth.emit(b).is_ok()
        && ip.emit(&mut b[14..]).is_ok()
        && na.emit(&mut b[54..], &addr, &ALL_NODES).is_ok()
}
