//! Neighbor discovery for IPv6 (RFC 4861): neighbour solicitation and
//! advertisement with link-layer address options, router solicitation and
//! advertisement (parsed for counting and for their link-layer address and
//! MTU options).

use core::net::Ipv6Addr;

use super::ethernet::EthernetAddress;
use super::{Error, Result, rd_array, rd8, rd16, rd32, wr_bytes, wr8, wr16, wr32};

/// Router solicitation.
pub const ROUTER_SOLICIT: u8 = 133;
/// Router advertisement.
pub const ROUTER_ADVERT: u8 = 134;
/// Neighbour solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbour advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;

const OPT_SOURCE_LLADDR: u8 = 1;
const OPT_TARGET_LLADDR: u8 = 2;
const OPT_PREFIX_INFO: u8 = 3;
const OPT_MTU: u8 = 5;

/// Neighbour advertisement flags (RFC 4861 §4.4).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighborFlags(pub u8);

impl NeighborFlags {
    /// Router flag.
    pub const ROUTER: NeighborFlags = NeighborFlags(0x80);
    /// Solicited flag.
    pub const SOLICITED: NeighborFlags = NeighborFlags(0x40);
    /// Override flag.
    pub const OVERRIDE: NeighborFlags = NeighborFlags(0x20);

    /// Whether every flag of `o` is set.
    pub const fn contains(self, o: NeighborFlags) -> bool {
        self.0 & o.0 == o.0
    }
}

/// Router advertisement flags (RFC 4861 §4.2: M, O; RFC 5175 others).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NdiscRouterFlags(pub u8);

impl NdiscRouterFlags {
    /// Managed address configuration.
    pub const MANAGED: NdiscRouterFlags = NdiscRouterFlags(0x80);
    /// Other configuration.
    pub const OTHER: NdiscRouterFlags = NdiscRouterFlags(0x40);
}

/// A neighbour discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdiscRepr {
    /// Router solicitation.
    RouterSolicit {
        /// Source link-layer address option.
        lladdr: Option<EthernetAddress>,
    },
    /// Router advertisement.
    RouterAdvert {
        /// Current hop limit.
        hop_limit: u8,
        /// Flags.
        flags: NdiscRouterFlags,
        /// Router lifetime in seconds.
        router_lifetime: u16,
        /// Reachable time in milliseconds.
        reachable_time: u32,
        /// Retransmission timer in milliseconds.
        retrans_time: u32,
        /// Source link-layer address option.
        lladdr: Option<EthernetAddress>,
        /// MTU option.
        mtu: Option<u32>,
        /// Number of prefix information options (parsed only; not emitted).
        prefix_count: u8,
    },
    /// Neighbour solicitation.
    NeighborSolicit {
        /// Target address.
        target_addr: Ipv6Addr,
        /// Source link-layer address option.
        lladdr: Option<EthernetAddress>,
    },
    /// Neighbour advertisement.
    NeighborAdvert {
        /// Flags.
        flags: NeighborFlags,
        /// Target address.
        target_addr: Ipv6Addr,
        /// Target link-layer address option.
        lladdr: Option<EthernetAddress>,
    },
}

/// Options found in a message.
#[derive(Default)]
struct Opts {
    source_ll: Option<EthernetAddress>,
    target_ll: Option<EthernetAddress>,
    mtu: Option<u32>,
    prefixes: u8,
}

fn parse_options(mut data: &[u8]) -> Result<Opts> {
    let mut o = Opts::default();
    while !data.is_empty() {
        let (ty, len) = match data {
            [t, l, ..] => (*t, usize::from(*l) * 8),
            _ => return Err(Error::BadNdisc),
        };
        // RFC 4861 §4.6: "Nodes MUST silently discard an ND packet that
        // contains an option with length zero."
        if len == 0 || len > data.len() {
            return Err(Error::BadNdisc);
        }
        let opt = &data[..len];
        match ty {
            OPT_SOURCE_LLADDR if len == 8 => o.source_ll = Some(EthernetAddress(rd_array(opt, 2))),
            OPT_TARGET_LLADDR if len == 8 => o.target_ll = Some(EthernetAddress(rd_array(opt, 2))),
            OPT_MTU if len == 8 => o.mtu = Some(rd32(opt, 4)),
            OPT_PREFIX_INFO => o.prefixes = o.prefixes.saturating_add(1),
            _ => {}
        }
        data = &data[len..];
    }
    Ok(o)
}

impl NdiscRepr {
    /// Parse the message `msg` (the whole ICMPv6 message, header included,
    /// checksum already verified by the caller).
    pub fn parse(msg: &[u8]) -> Result<Self> {
        let ty = rd8(msg, 0);
        if msg.len() < 8 || rd8(msg, 1) != 0 {
            return Err(Error::BadNdisc);
        }
        match ty {
            ROUTER_SOLICIT => {
                let o = parse_options(&msg[8..])?;
                Ok(NdiscRepr::RouterSolicit {
                    lladdr: o.source_ll,
                })
            }
            ROUTER_ADVERT => {
                let rest = msg.get(16..).ok_or(Error::BadNdisc)?;
                let o = parse_options(rest)?;
                Ok(NdiscRepr::RouterAdvert {
                    hop_limit: rd8(msg, 4),
                    flags: NdiscRouterFlags(rd8(msg, 5)),
                    router_lifetime: rd16(msg, 6),
                    reachable_time: rd32(msg, 8),
                    retrans_time: rd32(msg, 12),
                    lladdr: o.source_ll,
                    mtu: o.mtu,
                    prefix_count: o.prefixes,
                })
            }
            NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT => {
                let rest = msg.get(24..).ok_or(Error::BadNdisc)?;
                let target_addr = Ipv6Addr::from(rd_array::<16>(msg, 8));
                // RFC 4861 §7.1.1/§7.1.2: the target must not be multicast.
                if target_addr.is_multicast() {
                    return Err(Error::BadNdisc);
                }
                let o = parse_options(rest)?;
                if ty == NEIGHBOR_SOLICIT {
                    Ok(NdiscRepr::NeighborSolicit {
                        target_addr,
                        lladdr: o.source_ll,
                    })
                } else {
                    Ok(NdiscRepr::NeighborAdvert {
                        flags: NeighborFlags(rd8(msg, 4) & 0xe0),
                        target_addr,
                        lladdr: o.target_ll,
                    })
                }
            }
            _ => Err(Error::UnsupportedIcmpType),
        }
    }

    /// ICMPv6 type of this message.
    pub const fn msg_type(&self) -> u8 {
        match self {
            NdiscRepr::RouterSolicit { .. } => ROUTER_SOLICIT,
            NdiscRepr::RouterAdvert { .. } => ROUTER_ADVERT,
            NdiscRepr::NeighborSolicit { .. } => NEIGHBOR_SOLICIT,
            NdiscRepr::NeighborAdvert { .. } => NEIGHBOR_ADVERT,
        }
    }

    /// Length of the message this repr emits (ICMPv6 header included).
    pub fn len(&self) -> usize {
        let ll = |l: &Option<EthernetAddress>| if l.is_some() { 8 } else { 0 };
        match self {
            NdiscRepr::RouterSolicit { lladdr } => 8 + ll(lladdr),
            NdiscRepr::RouterAdvert { lladdr, mtu, .. } => {
                16 + ll(lladdr) + if mtu.is_some() { 8 } else { 0 }
            }
            NdiscRepr::NeighborSolicit { lladdr, .. }
            | NdiscRepr::NeighborAdvert { lladdr, .. } => 24 + ll(lladdr),
        }
    }

    /// Always false.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The solicited advertisement answering a neighbour solicitation for an
    /// address we own with `our_hw` (RFC 4861 §7.2.4: S set unless the
    /// solicitation came from the unspecified address, O set, target
    /// link-layer address included).
    pub fn advert_for(&self, our_hw: EthernetAddress, from_unspecified: bool) -> Option<NdiscRepr> {
        match *self {
            NdiscRepr::NeighborSolicit { target_addr, .. } => Some(NdiscRepr::NeighborAdvert {
                flags: if from_unspecified {
                    NeighborFlags::OVERRIDE
                } else {
                    NeighborFlags(NeighborFlags::SOLICITED.0 | NeighborFlags::OVERRIDE.0)
                },
                target_addr,
                lladdr: Some(our_hw),
            }),
            _ => None,
        }
    }

    /// Write the message (type, code, zero checksum, body, options) at the
    /// start of `buf`; the caller (`Icmpv6Repr::emit`) fills the checksum.
    pub(crate) fn emit_body(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.len();
        let out = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        out.fill(0);
        wr8(out, 0, self.msg_type());
        let ll_opt = |out: &mut [u8], off: usize, ty: u8, a: &EthernetAddress| {
            wr8(out, off, ty);
            wr8(out, off + 1, 1);
            wr_bytes(out, off + 2, &a.0);
        };
        match self {
            NdiscRepr::RouterSolicit { lladdr } => {
                if let Some(a) = lladdr {
                    ll_opt(out, 8, OPT_SOURCE_LLADDR, a);
                }
            }
            NdiscRepr::RouterAdvert {
                hop_limit,
                flags,
                router_lifetime,
                reachable_time,
                retrans_time,
                lladdr,
                mtu,
                ..
            } => {
                wr8(out, 4, *hop_limit);
                wr8(out, 5, flags.0);
                wr16(out, 6, *router_lifetime);
                wr32(out, 8, *reachable_time);
                wr32(out, 12, *retrans_time);
                let mut off = 16;
                if let Some(a) = lladdr {
                    ll_opt(out, off, OPT_SOURCE_LLADDR, a);
                    off += 8;
                }
                if let Some(m) = mtu {
                    wr8(out, off, OPT_MTU);
                    wr8(out, off + 1, 1);
                    wr32(out, off + 4, *m);
                }
            }
            NdiscRepr::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                wr_bytes(out, 8, &target_addr.octets());
                if let Some(a) = lladdr {
                    ll_opt(out, 24, OPT_SOURCE_LLADDR, a);
                }
            }
            NdiscRepr::NeighborAdvert {
                flags,
                target_addr,
                lladdr,
            } => {
                wr8(out, 4, flags.0 & 0xe0);
                wr_bytes(out, 8, &target_addr.octets());
                if let Some(a) = lladdr {
                    ll_opt(out, 24, OPT_TARGET_LLADDR, a);
                }
            }
        }
        Ok(len)
    }
}
