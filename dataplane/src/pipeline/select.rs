//! Which connections a management request means ([`ConnFilter`]), and
//! removing them ([`ControlMsg::FlushConnectionsWhere`]).

use super::*;

/// A selection of connections by service, server and client network; an
/// empty filter selects every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnFilter {
    /// Only the connections of this service.
    pub service: Option<ServiceIdx>,
    /// Only the connections to this server (of [`ConnFilter::service`]).
    pub server: Option<ServerIdx>,
    /// Only the connections from clients in this network: an address and
    /// a prefix length (32 or 128 for one client).
    pub client: Option<(IpAddr, u8)>,
}

impl ConnFilter {
    /// Whether the connection `c` is selected.
    pub fn matches(&self, c: &ConnView) -> bool {
        self.service.is_none_or(|s| s == c.service)
            && self.server.is_none_or(|s| s == c.server)
            && self
                .client
                .is_none_or(|(net, len)| in_network(c.client, net, len))
    }
}

/// Whether `addr` is inside `net`/`len` (of the same family).
fn in_network(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            crate::addr::mask_v4(a, len) == crate::addr::mask_v4(n, len)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            crate::addr::mask_v6(a, len) == crate::addr::mask_v6(n, len)
        }
        _ => false,
    }
}

impl<F: Frame> Pipeline<F> {
    /// Removes the connections `filter` selects, releasing what they held
    /// (scheduler counts, sticky references); returns how many. Walks the
    /// tables: for the management API, not the packet path.
    pub fn flush_connections_where(&mut self, filter: &ConnFilter) -> usize {
        let doomed: Vec<flow::Tuple> = self
            .connections()
            .filter(|c| filter.matches(c))
            .map(|c| flow::Tuple {
                src: c.client,
                dst: c.vip,
                sport: c.client_port,
                dport: c.vip_port,
                proto: c.protocol,
            })
            .collect();
        let mut n = 0;
        for t in &doomed {
            if let Some(h) = self.conn_lookup(t)
                && !h.is_reply()
            {
                self.conn_close(&h);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_networks_match_within_their_family() {
        let a: IpAddr = "172.16.3.4".parse().unwrap();
        assert!(in_network(a, "172.16.0.0".parse().unwrap(), 16));
        assert!(!in_network(a, "172.17.0.0".parse().unwrap(), 16));
        assert!(in_network(a, a, 32));
        assert!(in_network(a, "0.0.0.0".parse().unwrap(), 0));
        assert!(!in_network(a, "::".parse().unwrap(), 0));
        let b: IpAddr = "fd00::5".parse().unwrap();
        assert!(in_network(b, "fd00::".parse().unwrap(), 64));
    }
}
