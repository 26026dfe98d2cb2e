//! Software steering: which worker owns a frame's flow, for runtimes whose NIC cannot steer it.

use super::*;

/// The worker owning the NAT connections of a client address and port:
/// the Toeplitz hash of the address and the port (big-endian, in that
/// order) under `steer`'s key, looked up in its redirection table. Linear
/// like the RSS hash, so a steering program on a software queue
/// ([`Pipeline::steering_program`]) computes the same.
pub(super) fn client_owner(steer: &Steer, (addr, port): (IpAddr, u16)) -> u16 {
    let mut buf = [0u8; 18];
    let n = match addr {
        IpAddr::V4(a) => {
            buf[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            buf[..16].copy_from_slice(&a.octets());
            16
        }
    };
    buf[n..n + 2].copy_from_slice(&port.to_be_bytes());
    steer.reta.queue(steer.toeplitz.hash(&buf[..n + 2]))
}

impl<F: Frame> Pipeline<F> {
    /// Which worker owns the flow of a received `frame` on `port`: the
    /// worker whose queue the port's RSS (or, on a port without RSS, the
    /// software hash the pipeline assumes) steers it to. For full-NAT
    /// replies that is the worker that opened the connection. ICMP errors
    /// are steered by the flow they quote. `None` for frames any worker
    /// may handle (ARP, unparseable frames).
    pub fn owner_worker(&self, frame: &F, port: u16) -> Option<u16> {
        let p = self.ports.get(usize::from(port))?;
        let c = wire::classify_with(frame.bytes(), self.classify_opts).ok()?;
        // Neighbour discovery is answered and learned by whichever worker
        // receives it; what it learns is published to the others.
        if c.l3 == L3Kind::Ipv6
            && c.protocol == IpProtocol::ICMPV6
            && (133..=137).contains(&c.icmp_type)
        {
            return None;
        }
        if let Some(client) = self.nat_client(frame.bytes(), &c) {
            return Some(client_owner(&self.client_steer, client));
        }
        route::owner(&p.steer, frame.bytes(), &c)
    }

    /// The client end of a NAT-mode flow this frame belongs to (forward:
    /// its source; reply from a NAT server: its destination), so that both
    /// directions of a NAT connection are steered to one worker. No NIC can
    /// do that by RSS: a reply's addresses differ from the request's.
    pub(super) fn nat_client(&self, frame: &[u8], c: &Classified) -> Option<(IpAddr, u16)> {
        // ICMP errors are steered by the flow they quote, seen in the
        // direction its owner receives it.
        let (src, sport, dst, dport, proto) = if c.is_icmp_error() {
            let quoted = frame.get(c.l4_offset + 8..c.l3_end)?;
            let inner = match c.l3 {
                L3Kind::Ipv4 => wire::EmbeddedFlow::parse_v4(quoted).ok()?,
                _ => wire::EmbeddedFlow::parse_v6(quoted).ok()?,
            };
            (
                inner.dst_addr,
                inner.dst_port?,
                inner.src_addr,
                inner.src_port?,
                inner.protocol,
            )
        } else if c.has_l4_header() && matches!(c.protocol, IpProtocol::TCP | IpProtocol::UDP) {
            (c.src_addr, c.src_port, c.dst_addr, c.dst_port, c.protocol)
        } else {
            return None;
        };
        let pr = crate::model::Protocol::from_ip_proto(proto.0)?;
        if let Some(i) = self.services.lookup(dst, pr, dport) {
            return (self.svcs.get(usize::from(i))?.xmit == Xmit::Nat).then_some((src, sport));
        }
        // A reply from a server that is also in a full-NAT service goes to a
        // local address: that one is steered by RSS like the port was chosen for.
        if self
            .addrs
            .get(&dst)
            .is_some_and(|a| a.snat || a.port.is_some())
        {
            return None;
        }
        (self.nat_servers.contains(&(src, proto.0, sport))
            || self.nat_servers.contains(&(src, proto.0, 0)))
        .then_some((dst, dport))
    }
}
