//! The pipeline's side of the exception path: what it hands to the host
//! (the kernel interface of each port), what it rate-limits, and what the
//! host sends out.
//!
//! Traffic for the host is sorted in two classes. **Control** traffic —
//! ARP and neighbour discovery, ICMP and ICMPv6, BFD (UDP 3784 and 4784),
//! BGP (TCP 179, either side), VRRP (IP protocol 112), the cluster's
//! messages, and whatever the services' real servers send (the answers to
//! the health checks) — always passes, so routing, failure detection and
//! health checks keep working. The **rest**
//! (the replies to the host's own health checks, ssh, anything else at the
//! ports' addresses) passes a per-worker token bucket
//! ([`PipelineConfig::host_rate`]); what it refuses is dropped and counted
//! (`drop_host_rate`), so a flood at the appliance's own address reaches
//! the kernel at a bounded rate. VIP traffic never comes here.

use super::fate::{DropReason, Fate};
use super::{Output, Pipeline};
use crate::frame::Frame;
use crate::wire::{Classified, IpProtocol, L3Kind};

/// VRRP (RFC 5798).
const VRRP: IpProtocol = IpProtocol(112);
/// BFD single-hop and multi-hop (RFC 5881, RFC 5883).
const BFD_PORTS: [u16; 2] = [3784, 4784];
/// BGP (RFC 4271).
const BGP_PORT: u16 = 179;

/// The class of a frame for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostClass {
    /// Routing, neighbour resolution, failure detection and ICMP: never
    /// rate-limited.
    Control,
    /// Everything else: rate-limited.
    Other,
}

impl HostClass {
    /// The class of classified frame `c`.
    pub fn of(c: &Classified) -> HostClass {
        if c.l3 == L3Kind::Arp {
            return HostClass::Control;
        }
        let ports = [c.src_port, c.dst_port];
        let control = match c.protocol {
            IpProtocol::ICMP | IpProtocol::ICMPV6 => true,
            VRRP => true,
            IpProtocol::UDP => ports.iter().any(|p| BFD_PORTS.contains(p)),
            IpProtocol::TCP => ports.contains(&BGP_PORT),
            _ => false,
        };
        if control {
            HostClass::Control
        } else {
            HostClass::Other
        }
    }
}

impl<F: Frame> Pipeline<F> {
    /// The class of `c` for the host: [`HostClass::of`], and the cluster's
    /// own messages (membership, flow state) and whatever the services'
    /// real servers send (the answers to the host's health checks, which
    /// must get through a flood at the port's address) as control.
    fn host_class(&self, c: &Classified) -> HostClass {
        let cluster_msg = self.cfg.cluster.as_ref().is_some_and(|cl| {
            c.protocol == IpProtocol::UDP
                && (c.dst_port == cl.sync_port || c.src_port == cl.sync_port)
        });
        if cluster_msg || self.server_addrs.contains(&c.src_addr) {
            HostClass::Control
        } else {
            HostClass::of(c)
        }
    }

    /// Hands `frame` (classified as `c`), received on `port`, to the host,
    /// if the host path is on and its class's limit lets it through.
    #[inline]
    pub(crate) fn give_host(
        &mut self,
        frame: F,
        c: &Classified,
        port: u16,
        out: &mut Output<F>,
    ) -> Fate {
        if !self.cfg.host_path {
            return Fate::Dropped(DropReason::HostDisabled);
        }
        let Some(q) = out.host.get_mut(usize::from(port)) else {
            return Fate::Dropped(DropReason::BadPort);
        };
        match self.host_class(c) {
            HostClass::Control => self.counters.host_control += 1,
            HostClass::Other => {
                if !self.host_bucket.take(self.now, self.cfg.host_rate) {
                    return Fate::Dropped(DropReason::HostRate);
                }
            }
        }
        q.push(frame);
        Fate::Host
    }

    /// Sends `frame`, which the host wrote to its interface for `port`, out
    /// of that port as it is (the kernel resolved its next hop and built
    /// its Ethernet header). Counted in `from_host` (or
    /// `from_host_bad_port`); not a received frame.
    pub fn send_from_host(&mut self, frame: F, port: u16, out: &mut Output<F>) {
        match out.tx.get_mut(usize::from(port)) {
            Some(q) if usize::from(port) < self.ports.len() => {
                q.push(frame);
                self.counters.from_host += 1;
            }
            _ => self.counters.from_host_bad_port += 1,
        }
    }
}
