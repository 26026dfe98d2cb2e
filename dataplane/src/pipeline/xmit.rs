//! How a connection's packets are transmitted, chosen once when the
//! connection is made and kept in it (as DPVS binds `packet_xmit` to a
//! connection): [`Xmit`], and what differs between forwarding modes — the
//! reply tuple a connection expects and the rewrites of its packets — in one
//! place. The rest of the pipeline asks the connection's `Xmit`, and never
//! the service's mode, so a reload that changes a service's mode leaves the
//! connections it already has as they were made.

use std::net::IpAddr;

use super::flow::Tuple;
use crate::conn::Conn;
use crate::model::{ForwardMode, ServerIdx, ServiceIdx};
use crate::wire::FlowRewrite;

/// A connection as the forwarding code needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fwd {
    pub(crate) svc: ServiceIdx,
    pub(crate) server: ServerIdx,
    /// Client → VIP tuple.
    pub(crate) orig: Tuple,
    /// Full-NAT local address and port.
    pub(crate) local: Option<(IpAddr, u16)>,
    /// How its packets are transmitted.
    pub(crate) xmit: Xmit,
}

/// A connection's transmit: its service's forwarding mode when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Xmit {
    /// Destination NAT: the client's packets to the server's address and
    /// port; the server's replies back from the VIP.
    #[default]
    Nat,
    /// Destination and source NAT: also from a local address and port,
    /// which the server's replies come back to.
    FullNat,
    /// Direct server return: the packet unchanged to the server's MAC.
    Dsr,
    /// IP-in-IP (or IPv6) to the server.
    Tunnel,
}

impl Xmit {
    /// The transmit of a new connection of a service in `mode`.
    #[inline]
    pub(crate) const fn of(mode: ForwardMode) -> Xmit {
        match mode {
            ForwardMode::Nat => Xmit::Nat,
            ForwardMode::FullNat => Xmit::FullNat,
            ForwardMode::Dsr => Xmit::Dsr,
            ForwardMode::Tunnel => Xmit::Tunnel,
        }
    }

    /// Whether the connection takes a full-NAT local address and port.
    #[inline]
    pub(crate) const fn needs_local(self) -> bool {
        matches!(self, Xmit::FullNat)
    }

    /// Whether the client's packets are address-translated (NAT, full NAT).
    #[inline]
    pub(crate) const fn translates(self) -> bool {
        matches!(self, Xmit::Nat | Xmit::FullNat)
    }

    /// The tuple of the server's replies for a connection whose client
    /// tuple is `orig`, sent to `server`:`sport` (from `local` in full NAT),
    /// or `None` when replies bypass the appliance (DSR, tunnel) or a full-NAT
    /// connection has no local address.
    #[inline]
    pub(crate) fn reply_tuple(
        self,
        orig: &Tuple,
        server: IpAddr,
        sport: u16,
        local: Option<(IpAddr, u16)>,
    ) -> Option<Tuple> {
        let to = match self {
            Xmit::Nat => (orig.src, orig.sport),
            Xmit::FullNat => local?,
            Xmit::Dsr | Xmit::Tunnel => return None,
        };
        Some(Tuple {
            src: server,
            dst: to.0,
            sport,
            dport: to.1,
            proto: orig.proto,
        })
    }

    /// The rewrite of a client packet to `server`:`sport` (from `local` in
    /// full NAT), for the modes that translate ([`Xmit::translates`]).
    #[inline]
    pub(crate) fn original_rewrite(
        server: IpAddr,
        sport: u16,
        local: Option<(IpAddr, u16)>,
    ) -> FlowRewrite {
        FlowRewrite {
            src_addr: local.map(|(a, _)| a),
            dst_addr: Some(server),
            src_port: local.map(|(_, p)| p),
            dst_port: Some(sport),
        }
    }

    /// The rewrite of a server packet of the connection whose client tuple
    /// is `orig`: from the VIP, and to the client in full NAT.
    #[inline]
    pub(crate) fn reply_rewrite(self, orig: &Tuple) -> FlowRewrite {
        let full = self.needs_local();
        FlowRewrite {
            src_addr: Some(orig.dst),
            dst_addr: full.then_some(orig.src),
            src_port: Some(orig.dport),
            dst_port: full.then_some(orig.sport),
        }
    }

    /// For an ICMP error about a packet the appliance sent to `server`
    /// (`sport`, from `local` in full NAT): the rewrites of the quoted
    /// packet and of the error's own header that make it the server's
    /// error about the client's packet. `None` for the modes that do not
    /// translate (the error goes to the server as it is), or a full-NAT
    /// connection without a local address.
    #[inline]
    pub(crate) fn error_rewrites(
        self,
        server: IpAddr,
        sport: u16,
        local: Option<(IpAddr, u16)>,
    ) -> Option<(FlowRewrite, FlowRewrite)> {
        match self {
            Xmit::Nat => Some((
                FlowRewrite {
                    src_addr: Some(server),
                    src_port: Some(sport),
                    ..FlowRewrite::default()
                },
                FlowRewrite {
                    dst_addr: Some(server),
                    ..FlowRewrite::default()
                },
            )),
            Xmit::FullNat => {
                let (la, lp) = local?;
                Some((
                    FlowRewrite {
                        src_addr: Some(server),
                        src_port: Some(sport),
                        dst_addr: Some(la),
                        dst_port: Some(lp),
                    },
                    FlowRewrite {
                        src_addr: Some(la),
                        dst_addr: Some(server),
                        ..FlowRewrite::default()
                    },
                ))
            }
            Xmit::Dsr | Xmit::Tunnel => None,
        }
    }
}

/// What the pipeline keeps in a connection's [`Conn::user_flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ConnFlags {
    /// The connection holds a reference on its sticky binding.
    pub(crate) sticky: bool,
    /// How its packets are transmitted.
    pub(crate) xmit: Xmit,
    /// Opened by the SYN proxy: its sequence numbers are shifted
    /// (`synproxy.rs`).
    pub(crate) syn_proxy: bool,
}

const STICKY: u8 = 1;
const XMIT_SHIFT: u32 = 1;
const SYN_PROXY: u8 = 1 << 3;

impl ConnFlags {
    /// The flags as stored in a connection.
    #[inline]
    pub(crate) const fn bits(self) -> u8 {
        (self.sticky as u8)
            | (self.xmit as u8) << XMIT_SHIFT
            | if self.syn_proxy { SYN_PROXY } else { 0 }
    }

    /// The flags of `conn`.
    #[inline]
    pub(crate) const fn of(conn: &Conn) -> ConnFlags {
        ConnFlags::from_bits(conn.user_flags)
    }

    /// The flags stored as `b`.
    #[inline]
    pub(crate) const fn from_bits(b: u8) -> ConnFlags {
        ConnFlags {
            sticky: b & STICKY != 0,
            xmit: match (b >> XMIT_SHIFT) & 3 {
                0 => Xmit::Nat,
                1 => Xmit::FullNat,
                2 => Xmit::Dsr,
                _ => Xmit::Tunnel,
            },
            syn_proxy: b & SYN_PROXY != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        for xmit in [Xmit::Nat, Xmit::FullNat, Xmit::Dsr, Xmit::Tunnel] {
            for (sticky, syn_proxy) in [(false, false), (true, false), (false, true), (true, true)]
            {
                let f = ConnFlags {
                    sticky,
                    xmit,
                    syn_proxy,
                };
                assert_eq!(ConnFlags::from_bits(f.bits()), f);
            }
        }
    }
}
