//! The one error type of the wire layer.

/// Why a frame or header could not be parsed or emitted.
///
/// Each variant is specific enough to become its own drop counter in the
/// pipeline: use [`Error::index`] to address a counter array of
/// [`Error::COUNT`] entries and [`Error::name`] to label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Frame shorter than an Ethernet header (14 bytes).
    #[error("truncated ethernet header")]
    TruncatedEthernet,
    /// 802.1Q/802.1ad tag announced but the frame ends inside it.
    #[error("truncated VLAN tag")]
    TruncatedVlan,
    /// More than one VLAN tag (QinQ stacks are not forwarded).
    #[error("stacked VLAN tags")]
    StackedVlan,
    /// EtherType is neither IPv4, IPv6 nor ARP.
    #[error("unsupported ethertype")]
    UnsupportedEthertype,
    /// Frame ends inside the ARP packet.
    #[error("truncated ARP packet")]
    TruncatedArp,
    /// ARP for something other than Ethernet/IPv4, or with wrong address lengths.
    #[error("unsupported ARP hardware/protocol")]
    UnsupportedArp,
    /// Frame ends inside the IPv4 header or before IPv4 total length.
    #[error("truncated IPv4 packet")]
    TruncatedIpv4,
    /// IP version nibble does not match the EtherType (or is neither 4 nor 6).
    #[error("bad IP version")]
    BadIpVersion,
    /// IPv4 IHL below 5.
    #[error("bad IPv4 header length")]
    BadIhl,
    /// IPv4 total length shorter than its header.
    #[error("bad IPv4 total length")]
    BadTotalLength,
    /// IPv4 header checksum does not verify.
    #[error("bad IPv4 header checksum")]
    BadIpv4Checksum,
    /// Malformed IPv4 option list.
    #[error("bad IPv4 options")]
    BadIpv4Options,
    /// Frame ends inside the IPv6 header or before IPv6 payload length.
    #[error("truncated IPv6 packet")]
    TruncatedIpv6,
    /// IPv6 extension header runs past the payload.
    #[error("truncated IPv6 extension header")]
    TruncatedExtHeader,
    /// IPv6 extension header chain is malformed (hop-by-hop not first,
    /// too many headers, bad fragment header).
    #[error("bad IPv6 extension header chain")]
    BadExtHeader,
    /// IP payload shorter than the TCP header or its data offset.
    #[error("truncated TCP header")]
    TruncatedTcp,
    /// TCP data offset below 5.
    #[error("bad TCP data offset")]
    BadTcpDataOffset,
    /// Malformed TCP option list (length 0/1 or running past the header).
    #[error("bad TCP options")]
    BadTcpOptions,
    /// IP payload shorter than the UDP header or its length field.
    #[error("truncated UDP datagram")]
    TruncatedUdp,
    /// UDP length field below 8.
    #[error("bad UDP length")]
    BadUdpLength,
    /// IP payload shorter than the ICMP header.
    #[error("truncated ICMP message")]
    TruncatedIcmp,
    /// IP payload shorter than the ICMPv6 header or its message body.
    #[error("truncated ICMPv6 message")]
    TruncatedIcmpv6,
    /// TCP, UDP, ICMP or ICMPv6 checksum does not verify (only where checked).
    #[error("bad L4 checksum")]
    BadL4Checksum,
    /// ICMP/ICMPv6 type (or code) that this layer does not model.
    #[error("unsupported ICMP type")]
    UnsupportedIcmpType,
    /// Malformed neighbour discovery message or option (RFC 4861 §4.6:
    /// options of length zero).
    #[error("bad neighbour discovery message")]
    BadNdisc,
    /// The packet quoted inside an ICMP error is truncated or malformed.
    #[error("bad ICMP embedded packet")]
    BadEmbedded,
    /// A packet from a cluster node whose encapsulation (GUE) is truncated
    /// or not Tack's.
    #[error("bad encapsulation from a cluster node")]
    BadGue,
    /// An output buffer was too small for the header being emitted.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A value given to an emitter or rewriter does not fit the header
    /// (e.g. a payload over 65535 bytes, an IPv6 address for an IPv4 packet).
    #[error("value out of range for this header")]
    InvalidArgument,
}

impl Error {
    /// Number of variants, to size counter arrays.
    pub const COUNT: usize = 29;

    /// Every variant, in [`Error::index`] order.
    pub const ALL: [Error; Error::COUNT] = [
        Error::TruncatedEthernet,
        Error::TruncatedVlan,
        Error::StackedVlan,
        Error::UnsupportedEthertype,
        Error::TruncatedArp,
        Error::UnsupportedArp,
        Error::TruncatedIpv4,
        Error::BadIpVersion,
        Error::BadIhl,
        Error::BadTotalLength,
        Error::BadIpv4Checksum,
        Error::BadIpv4Options,
        Error::TruncatedIpv6,
        Error::TruncatedExtHeader,
        Error::BadExtHeader,
        Error::TruncatedTcp,
        Error::BadTcpDataOffset,
        Error::BadTcpOptions,
        Error::TruncatedUdp,
        Error::BadUdpLength,
        Error::TruncatedIcmp,
        Error::TruncatedIcmpv6,
        Error::BadL4Checksum,
        Error::UnsupportedIcmpType,
        Error::BadNdisc,
        Error::BadEmbedded,
        Error::BadGue,
        Error::BufferTooSmall,
        Error::InvalidArgument,
    ];

    /// Dense index in `0..Error::COUNT`, for a drop-counter array.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Short snake_case name, suitable as a counter label.
    pub const fn name(self) -> &'static str {
        match self {
            Error::TruncatedEthernet => "truncated_ethernet",
            Error::TruncatedVlan => "truncated_vlan",
            Error::StackedVlan => "stacked_vlan",
            Error::UnsupportedEthertype => "unsupported_ethertype",
            Error::TruncatedArp => "truncated_arp",
            Error::UnsupportedArp => "unsupported_arp",
            Error::TruncatedIpv4 => "truncated_ipv4",
            Error::BadIpVersion => "bad_ip_version",
            Error::BadIhl => "bad_ihl",
            Error::BadTotalLength => "bad_total_length",
            Error::BadIpv4Checksum => "bad_ipv4_checksum",
            Error::BadIpv4Options => "bad_ipv4_options",
            Error::TruncatedIpv6 => "truncated_ipv6",
            Error::TruncatedExtHeader => "truncated_ext_header",
            Error::BadExtHeader => "bad_ext_header",
            Error::TruncatedTcp => "truncated_tcp",
            Error::BadTcpDataOffset => "bad_tcp_data_offset",
            Error::BadTcpOptions => "bad_tcp_options",
            Error::TruncatedUdp => "truncated_udp",
            Error::BadUdpLength => "bad_udp_length",
            Error::TruncatedIcmp => "truncated_icmp",
            Error::TruncatedIcmpv6 => "truncated_icmpv6",
            Error::BadL4Checksum => "bad_l4_checksum",
            Error::UnsupportedIcmpType => "unsupported_icmp_type",
            Error::BadNdisc => "bad_ndisc",
            Error::BadEmbedded => "bad_embedded",
            Error::BadGue => "bad_gue",
            Error::BufferTooSmall => "buffer_too_small",
            Error::InvalidArgument => "invalid_argument",
        }
    }
}

/// Result of a wire operation.
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        let mut names = std::collections::HashSet::new();
        for (i, e) in Error::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert!(names.insert(e.name()));
        }
    }
}
