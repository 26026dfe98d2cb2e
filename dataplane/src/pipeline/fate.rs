//! What becomes of a received frame: its [`Fate`], one per frame.
//!
//! Every step that handles a received frame returns the frame's fate as a
//! value, and [`Pipeline::process_burst`](super::Pipeline::process_burst)
//! counts it, once, with [`Counters::count`]: a frame cannot be counted twice
//! or forgotten, because each path through the handling code ends in exactly
//! one `Fate`. What else happens on the way (an ICMP error generated, a
//! neighbour learned, an event pushed) has counters of its own, which are not
//! dispositions.

use super::Counters;
use crate::wire;

/// Why a frame was dropped: one variant per `drop_*` counter of
/// [`Counters`], and the wire layer's errors (`drop_wire_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// Frames received on a port that is not configured, or to be sent on a port the output has no queue for.
    BadPort,
    /// IP packets neither for one of our addresses nor of a known connection.
    NotForUs,
    /// Packets to a VIP with no service for their protocol and port.
    NoService,
    /// Packets to a VIP of a protocol Tack does not balance (not TCP or UDP).
    UnsupportedProtocol,
    /// New clients for which no server was available.
    NoServer,
    /// TCP segments without a connection that cannot open one (not a SYN, and the service cannot pick flows up mid-stream).
    TcpNoConn,
    /// Packets of a connection whose server is `down` or in `maint` (the connection is closed).
    ServerDown,
    /// Segments to a redirect service the responder does not answer.
    RedirectIgnored,
    /// Segments to a redirect service whose SYN cookie does not validate.
    RedirectBadCookie,
    /// Segments to a SYN-proxied service without a connection that are neither a SYN nor an ACK.
    SynProxyIgnored,
    /// ACKs to a SYN-proxied service whose SYN cookie does not validate.
    SynProxyBadCookie,
    /// Client segments of a SYN-proxied connection whose server has not answered yet.
    SynProxyPending,
    /// TCP segments with both SYN and FIN set to a service: never a connection request, dropped without opening one.
    TcpSynFin,
    /// New flows refused because the connection table was full.
    ConnFull,
    /// New flows whose reply tuple was already in use.
    ReplyConflict,
    /// Full-NAT flows for which no local port could be allocated.
    FnatNoPort,
    /// Full-NAT replies (to a local address) with no connection on this worker.
    FnatNoConn,
    /// IP fragments (the pipeline does not reassemble).
    Fragment,
    /// Packets whose TTL / hop limit ran out.
    TtlExceeded,
    /// Packets larger than the egress MTU.
    TooBig,
    /// Packets with no route to their destination.
    NoRoute,
    /// DSR flows whose server is not on-link.
    DsrNotOnlink,
    /// Packets that needed a source address the egress port does not have.
    NoSourceAddr,
    /// Frames without the headroom or room a rewrite needed.
    NoRoom,
    /// Frames refused by a rewrite (a case the wire layer rejects).
    Rewrite,
    /// Frames held for a neighbour that could not be held (queue full, or table full).
    NeighQueueFull,
    /// Frames for a neighbour whose resolution failed recently.
    NeighFailed,
    /// ARP packets not for us (other targets, gratuitous, replies).
    ArpOther,
    /// ARP packets with an unusable sender (multicast MAC, our own address).
    ArpBadSender,
    /// Neighbour discovery messages failing validation (RFC 4861 §7.1).
    NdpInvalid,
    /// Neighbour discovery messages not for us.
    NdpOther,
    /// ICMP echo requests to non-unicast or fragmented, or other ICMP we do not answer.
    IcmpOther,
    /// ICMP errors quoting no known connection and not for one of our addresses.
    IcmpErrorNoConn,
    /// Frames the host would receive while the host path is disabled.
    HostDisabled,
    /// Frames for the host over its rate limit.
    HostRate,
    /// The wire layer refused the frame (counted per [`wire::Error`]).
    Wire(wire::Error),
}

/// What became of a received frame (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a frame's fate must be counted"]
pub(crate) enum Fate {
    /// Forwarded at once (`tx_forward`).
    Forwarded,
    /// Answered by the pipeline itself, sent at once (`tx_local`).
    Answered,
    /// Handed to the host (`host`).
    Host,
    /// Held while its next hop resolves (`held`).
    Held,
    /// Consumed without output (`rx_consumed`).
    Consumed,
    /// Dropped (`drop_*`).
    Dropped(DropReason),
}

impl Counters {
    /// Counts one frame's fate.
    #[inline(always)]
    pub(crate) fn count(&mut self, fate: Fate) {
        match fate {
            Fate::Forwarded => self.tx_forward += 1,
            Fate::Answered => self.tx_local += 1,
            Fate::Host => self.host += 1,
            Fate::Held => self.held += 1,
            Fate::Consumed => self.rx_consumed += 1,
            Fate::Dropped(why) => self.count_drop(why),
        }
    }

    /// Counts a dropped frame.
    #[cold]
    #[inline(never)]
    pub(crate) fn count_drop(&mut self, why: DropReason) {
        match why {
            DropReason::BadPort => self.drop_bad_port += 1,
            DropReason::NotForUs => self.drop_not_for_us += 1,
            DropReason::NoService => self.drop_no_service += 1,
            DropReason::UnsupportedProtocol => self.drop_unsupported_protocol += 1,
            DropReason::NoServer => self.drop_no_server += 1,
            DropReason::TcpNoConn => self.drop_tcp_no_conn += 1,
            DropReason::ServerDown => self.drop_server_down += 1,
            DropReason::TcpSynFin => self.drop_tcp_syn_fin += 1,
            DropReason::RedirectIgnored => self.drop_redirect_ignored += 1,
            DropReason::RedirectBadCookie => self.drop_redirect_bad_cookie += 1,
            DropReason::SynProxyIgnored => self.drop_synproxy_ignored += 1,
            DropReason::SynProxyBadCookie => self.drop_synproxy_bad_cookie += 1,
            DropReason::SynProxyPending => self.drop_synproxy_pending += 1,
            DropReason::ConnFull => self.drop_conn_full += 1,
            DropReason::ReplyConflict => self.drop_reply_conflict += 1,
            DropReason::FnatNoPort => self.drop_fnat_no_port += 1,
            DropReason::FnatNoConn => self.drop_fnat_no_conn += 1,
            DropReason::Fragment => self.drop_fragment += 1,
            DropReason::TtlExceeded => self.drop_ttl_exceeded += 1,
            DropReason::TooBig => self.drop_too_big += 1,
            DropReason::NoRoute => self.drop_no_route += 1,
            DropReason::DsrNotOnlink => self.drop_dsr_not_onlink += 1,
            DropReason::NoSourceAddr => self.drop_no_source_addr += 1,
            DropReason::NoRoom => self.drop_no_room += 1,
            DropReason::Rewrite => self.drop_rewrite += 1,
            DropReason::NeighQueueFull => self.drop_neigh_queue_full += 1,
            DropReason::NeighFailed => self.drop_neigh_failed += 1,
            DropReason::ArpOther => self.drop_arp_other += 1,
            DropReason::ArpBadSender => self.drop_arp_bad_sender += 1,
            DropReason::NdpInvalid => self.drop_ndp_invalid += 1,
            DropReason::NdpOther => self.drop_ndp_other += 1,
            DropReason::IcmpOther => self.drop_icmp_other += 1,
            DropReason::IcmpErrorNoConn => self.drop_icmp_error_no_conn += 1,
            DropReason::HostDisabled => self.drop_host_disabled += 1,
            DropReason::HostRate => self.drop_host_rate += 1,
            DropReason::Wire(e) => self.wire_drop(e),
        }
    }
}
