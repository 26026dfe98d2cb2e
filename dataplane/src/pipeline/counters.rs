//! The pipeline's counters: one `u64` per thing that can happen to a frame,
//! and in particular one per drop reason.
//!
//! Every received frame ends in exactly one *disposition*: sent at once
//! (`tx_forward`, `tx_local`), handed to the host (`host`), held while its
//! next hop resolves (`held`), consumed (`rx_consumed`: ARP and NDP answers
//! the neighbour table learned from), or dropped (one of the `drop_*` counters,
//! including one per [`wire::Error`] variant). [`Counters::accounted`] sums
//! the dispositions, which must equal `rx_frames`; the tests and the fuzz
//! target check that identity. Held frames are later released (`neigh_released`)
//! or dropped (`neigh_hold_dropped`).
//!
//! The tables' own counters (connections, sticky bindings, schedulers) are
//! copied in after each burst and poll, so [`Counters::for_each`] exports
//! everything under one name space.

use crate::conn::ConnStats;
use crate::sched::SchedStats;
use crate::sticky::StickyStats;
use crate::wire::Error;

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident, )*) => {
        /// The pipeline's counters (see the module documentation).
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $name: u64, )*
            /// Frames the wire layer refused, indexed by [`Error::index`]
            /// (exported as `drop_wire_<name>`).
            pub drop_wire: [u64; Error::COUNT],
            /// IPv4 connection table counters (exported as `conn4_*`).
            pub conn4: ConnStats,
            /// IPv6 connection table counters (exported as `conn6_*`).
            pub conn6: ConnStats,
            /// Sticky table counters (exported as `sticky_*`).
            pub sticky: StickyStats,
            /// Scheduler counters (exported as `sched_*`).
            pub sched: SchedStats,
        }

        impl Default for Counters {
            fn default() -> Counters {
                Counters {
                    $( $name: 0, )*
                    drop_wire: [0; Error::COUNT],
                    conn4: ConnStats::default(),
                    conn6: ConnStats::default(),
                    sticky: StickyStats::default(),
                    sched: SchedStats::default(),
                }
            }
        }

        impl Counters {
            /// Names of the pipeline's own scalar counters, in export order.
            pub const NAMES: &'static [&'static str] = &[$( stringify!($name), )*];

            /// Calls `f` with every counter's name and value (the scalar
            /// counters, then the per-wire-error drops, then the tables').
            pub fn for_each(&self, mut f: impl FnMut(&'static str, u64)) {
                $( f(stringify!($name), self.$name); )*
                for (name, v) in WIRE_DROP_NAMES.iter().zip(self.drop_wire.iter()) {
                    f(name, *v);
                }
                conn_stats(&CONN4_NAMES, &self.conn4, &mut f);
                conn_stats(&CONN6_NAMES, &self.conn6, &mut f);
                sticky_stats(&self.sticky, &mut f);
                sched_stats(&self.sched, &mut f);
            }
        }
    };
}

counters! {
    /// Frames received (every frame passed to `process_burst`).
    rx_frames,
    /// Frames forwarded at once (NAT, full NAT, DSR, tunnel, translated ICMP errors).
    tx_forward,
    /// Replies the pipeline answered itself (ARP, NDP, echo, ICMP errors it generated), sent at once.
    tx_local,
    /// Frames handed to the host (exception path).
    host,
    /// Packets of flows without a connection here sent to the flow's primary node.
    cluster_to_primary,
    /// Packets a primary did not know, sent to the flow's backup node (second chance).
    cluster_second_chance,
    /// Packets from other nodes, decapsulated and handled (also counted in `rx_frames` again).
    cluster_received,
    /// Of `host`: control traffic (ARP, NDP, ICMP, BFD, BGP, VRRP), never rate-limited.
    host_control,
    /// Frames held while their next hop is being resolved.
    held,
    /// Frames consumed without output (ARP / NDP answers the neighbour table learned from).
    rx_consumed,
    /// Frames originated by the pipeline (ARP requests, neighbour solicitations).
    tx_originated,
    /// Frames received on a port that is not configured, or to be sent on a port the output has no queue for.
    drop_bad_port,
    /// IP packets neither for one of our addresses nor of a known connection.
    drop_not_for_us,
    /// Packets to a VIP with no service for their protocol and port.
    drop_no_service,
    /// Packets to a VIP of a protocol Tack does not balance (not TCP or UDP).
    drop_unsupported_protocol,
    /// New clients for which no server was available.
    drop_no_server,
    /// TCP segments without a connection that cannot open one (not a SYN, and the service cannot pick flows up mid-stream).
    drop_tcp_no_conn,
    /// TCP segments with both SYN and FIN set to a service: never a connection request, dropped without opening one.
    drop_tcp_syn_fin,
    /// Packets of a connection whose server is `down` or in `maint` (the connection is closed).
    drop_server_down,
    /// New flows refused because the connection table was full.
    drop_conn_full,
    /// New flows whose reply tuple was already in use.
    drop_reply_conflict,
    /// Full-NAT flows for which no local port could be allocated.
    drop_fnat_no_port,
    /// Full-NAT replies (to a local address) with no connection on this worker.
    drop_fnat_no_conn,
    /// IP fragments (the pipeline does not reassemble).
    drop_fragment,
    /// Packets whose TTL / hop limit ran out.
    drop_ttl_exceeded,
    /// Packets larger than the egress MTU.
    drop_too_big,
    /// Packets with no route to their destination.
    drop_no_route,
    /// DSR flows whose server is not on-link.
    drop_dsr_not_onlink,
    /// Packets that needed a source address the egress port does not have.
    drop_no_source_addr,
    /// Frames without the headroom or room a rewrite needed.
    drop_no_room,
    /// Frames refused by a rewrite (a case the wire layer rejects).
    drop_rewrite,
    /// Frames held for a neighbour that could not be held (queue full, or table full).
    drop_neigh_queue_full,
    /// Frames for a neighbour whose resolution failed recently.
    drop_neigh_failed,
    /// ARP packets not for us (other targets, gratuitous, replies).
    drop_arp_other,
    /// ARP packets with an unusable sender (multicast MAC, our own address).
    drop_arp_bad_sender,
    /// Neighbour discovery messages failing validation (RFC 4861 §7.1).
    drop_ndp_invalid,
    /// Neighbour discovery messages not for us.
    drop_ndp_other,
    /// ICMP echo requests to non-unicast or fragmented, or other ICMP we do not answer.
    drop_icmp_other,
    /// ICMP errors quoting no known connection and not for one of our addresses.
    drop_icmp_error_no_conn,
    /// Frames the host would receive while the host path is disabled.
    drop_host_disabled,
    /// Frames for the host over its rate limit (`host_rate`; control traffic is never limited).
    drop_host_rate,
    /// Segments to a redirect service the responder does not answer (a bare ACK, a FIN, an RST, no data).
    drop_redirect_ignored,
    /// Segments to a redirect service whose SYN cookie does not validate (forged, or too old).
    drop_redirect_bad_cookie,
    /// Segments to a SYN-proxied service without a connection that are neither a SYN nor an ACK (a FIN, an RST, a SYN-ACK).
    drop_synproxy_ignored,
    /// ACKs to a SYN-proxied service whose SYN cookie does not validate (forged, too old, or of a flood).
    drop_synproxy_bad_cookie,
    /// Client segments of a SYN-proxied connection before its server answered (the client sends them again).
    drop_synproxy_pending,
    /// SYNs to a SYN-proxied service answered with a SYN cookie.
    synproxy_syn_cookies,
    /// Handshakes completed with a valid cookie: the server's side opened (a SYN sent to it).
    synproxy_opened,
    /// Server SYN-ACKs of SYN-proxied connections acknowledged: the two sides joined.
    synproxy_joined,
    /// TCP segments of unknown connections answered with a reset (services with `reset_unknown`).
    tcp_resets_sent,
    /// SYNs to a redirect service answered with a SYN cookie.
    redirect_syn_cookies,
    /// Requests to a redirect service answered with a redirect (302).
    redirect_found,
    /// Requests to a redirect service answered 400 (malformed, or not whole in one segment).
    redirect_bad_request,
    /// Requests to a redirect service answered 414 (the redirect would not fit the segment).
    redirect_too_long,
    /// Full-NAT replies that arrived on a worker that does not own them (RSS disagreed).
    fnat_reply_wrong_worker,
    /// ARP requests answered.
    arp_replies,
    /// Neighbour solicitations answered.
    ndp_adverts,
    /// ICMP / ICMPv6 echo requests answered.
    echo_replies,
    /// ICMP errors about a NAT'd flow translated and forwarded.
    icmp_errors_translated,
    /// ICMP errors about a DSR / tunnel flow passed to the server.
    icmp_errors_to_server,
    /// ICMP errors the pipeline generated (time exceeded, fragmentation needed, packet too big).
    icmp_errors_sent,
    /// ICMP errors not generated because of the rate limit.
    icmp_errors_rate_limited,
    /// ICMP errors not generated because the port has no address of the family.
    icmp_errors_no_source,
    /// ICMP errors not generated because the frame could not be resized.
    icmp_errors_no_room,
    /// Connections created from this worker's packets.
    conn_created,
    /// Connections installed from another node's record (a cluster's
    /// synchronised state) or preloaded ([`Pipeline::install_connection`]).
    conn_installed,
    /// Connections picked up mid-stream (first packet not a SYN).
    conn_picked_up,
    /// Connections closed (expired, evicted, reloaded, flushed or server down).
    conn_closed,
    /// Connections closed because their server went away in a reload.
    conn_reload_closed,
    /// TCP SYNs whose MSS option was lowered (tunnel mode).
    mss_clamped,
    /// Full-NAT ports chosen without RSS steering (the reply port's RETA does not serve this worker).
    fnat_port_unsteered,
    /// Full-NAT ports skipped because a previous instance used their tuple
    /// and the server may still hold it in TIME_WAIT (the quarantine after a restart).
    fnat_port_quarantined,
    /// ARP requests sent.
    arp_requests_sent,
    /// Neighbour solicitations sent.
    ndp_solicits_sent,
    /// Neighbour requests not sent because no frame could be allocated.
    alloc_failed,
    /// Neighbour entries learned or updated from ARP / NDP.
    neigh_learned,
    /// Neighbour entries installed from the control thread.
    neigh_installed,
    /// Neighbour resolutions that failed (no answer after the last probe).
    neigh_failed,
    /// Held frames sent after their neighbour resolved.
    neigh_released,
    /// Held frames dropped (resolution failed, flush, reload).
    neigh_hold_dropped,
    /// Neighbour entries removed by ageing.
    neigh_aged,
    /// Events not delivered because the outbox was full.
    events_dropped,
    /// Gratuitous ARPs and unsolicited neighbour advertisements sent for the appliance's addresses.
    addresses_announced,
    /// Frames the host sent out of a port ([`super::Pipeline::send_from_host`]).
    from_host,
    /// Frames the host sent to a port that does not exist.
    from_host_bad_port,
    /// Control messages applied.
    control_applied,
    /// Control messages refused (unknown service or server, invalid key, ...).
    control_rejected,
    /// Configuration changes adopted.
    reloads,
}

/// Export names of the per-wire-error drop counters, in [`Error::index`] order.
pub const WIRE_DROP_NAMES: [&str; Error::COUNT] = [
    "drop_wire_truncated_ethernet",
    "drop_wire_truncated_vlan",
    "drop_wire_stacked_vlan",
    "drop_wire_unsupported_ethertype",
    "drop_wire_truncated_arp",
    "drop_wire_unsupported_arp",
    "drop_wire_truncated_ipv4",
    "drop_wire_bad_ip_version",
    "drop_wire_bad_ihl",
    "drop_wire_bad_total_length",
    "drop_wire_bad_ipv4_checksum",
    "drop_wire_bad_ipv4_options",
    "drop_wire_truncated_ipv6",
    "drop_wire_truncated_ext_header",
    "drop_wire_bad_ext_header",
    "drop_wire_truncated_tcp",
    "drop_wire_bad_tcp_data_offset",
    "drop_wire_bad_tcp_options",
    "drop_wire_truncated_udp",
    "drop_wire_bad_udp_length",
    "drop_wire_truncated_icmp",
    "drop_wire_truncated_icmpv6",
    "drop_wire_bad_l4_checksum",
    "drop_wire_unsupported_icmp_type",
    "drop_wire_bad_ndisc",
    "drop_wire_bad_embedded",
    "drop_wire_bad_gue",
    "drop_wire_buffer_too_small",
    "drop_wire_invalid_argument",
];

const CONN4_NAMES: [&str; 15] = [
    "conn4_lookups",
    "conn4_hits",
    "conn4_misses",
    "conn4_inserts",
    "conn4_insert_exists",
    "conn4_reply_conflicts",
    "conn4_full_drops",
    "conn4_evictions",
    "conn4_expired",
    "conn4_lazy_rearms",
    "conn4_eager_rearms",
    "conn4_removed",
    "conn4_reload_removed",
    "conn4_stale_handles",
    "conn4_bad_calls",
];

const CONN6_NAMES: [&str; 15] = [
    "conn6_lookups",
    "conn6_hits",
    "conn6_misses",
    "conn6_inserts",
    "conn6_insert_exists",
    "conn6_reply_conflicts",
    "conn6_full_drops",
    "conn6_evictions",
    "conn6_expired",
    "conn6_lazy_rearms",
    "conn6_eager_rearms",
    "conn6_removed",
    "conn6_reload_removed",
    "conn6_stale_handles",
    "conn6_bad_calls",
];

fn conn_stats(names: &[&'static str; 15], s: &ConnStats, f: &mut impl FnMut(&'static str, u64)) {
    let v = [
        s.lookups,
        s.hits,
        s.misses,
        s.inserts,
        s.insert_exists,
        s.reply_conflicts,
        s.full_drops,
        s.evictions,
        s.expired,
        s.lazy_rearms,
        s.eager_rearms,
        s.removed,
        s.reload_removed,
        s.stale_handles,
        s.bad_calls,
    ];
    for (n, x) in names.iter().zip(v) {
        f(n, x);
    }
}

fn sticky_stats(s: &StickyStats, f: &mut impl FnMut(&'static str, u64)) {
    f("sticky_hits", s.hits);
    f("sticky_learned", s.learned);
    f("sticky_rebinds", s.rebinds);
    f("sticky_unsticky", s.unsticky);
    f("sticky_no_server", s.no_server);
    f("sticky_full_bypass", s.full_bypass);
    f("sticky_full_evictions", s.full_evictions);
    f("sticky_expired", s.expired);
    f("sticky_installs", s.installs);
    f("sticky_install_rejected", s.install_rejected);
    f("sticky_install_replaced", s.install_replaced);
    f("sticky_release_unknown", s.release_unknown);
    f("sticky_flushed", s.flushed);
    f("sticky_reload_removed", s.reload_removed);
    f("sticky_events_dropped", s.events_dropped);
    f("sticky_reload_events_dropped", s.reload_events_dropped);
    f("sticky_invalid_service", s.invalid_service);
}

fn sched_stats(s: &SchedStats, f: &mut impl FnMut(&'static str, u64)) {
    f("sched_picks", s.picks);
    f("sched_no_server", s.no_server);
    f("sched_invalid_service", s.invalid_service);
    f("sched_resyncs", s.resyncs);
}

impl Counters {
    /// Frames whose fate is decided: sent, handed to the host, held, or
    /// dropped (all `drop_*` counters, wire drops included). Equals
    /// [`Counters::rx_frames`] after every burst.
    pub fn accounted(&self) -> u64 {
        let mut drops = 0u64;
        self.for_each(|name, v| {
            if name.starts_with("drop_") {
                drops += v;
            }
        });
        self.tx_forward + self.tx_local + self.host + self.held + self.rx_consumed + drops
    }

    /// The sum of all drop counters.
    pub fn drops(&self) -> u64 {
        let mut drops = 0u64;
        self.for_each(|name, v| {
            if name.starts_with("drop_") {
                drops += v;
            }
        });
        drops
    }

    /// The value of the counter called `name` (as [`Counters::for_each`] names it).
    pub fn get(&self, name: &str) -> Option<u64> {
        let mut out = None;
        self.for_each(|n, v| {
            if n == name {
                out = Some(v);
            }
        });
        out
    }

    /// Counts a frame the wire layer refused.
    #[inline]
    pub(crate) fn wire_drop(&mut self, e: Error) {
        if let Some(c) = self.drop_wire.get_mut(e.index()) {
            *c += 1;
        } else {
            self.drop_rewrite += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_errors() {
        for e in Error::ALL {
            assert_eq!(
                WIRE_DROP_NAMES[e.index()],
                format!("drop_wire_{}", e.name())
            );
        }
    }

    #[test]
    fn names_are_unique_and_exported() {
        let c = Counters::default();
        let mut names = std::collections::HashSet::new();
        c.for_each(|n, _| assert!(names.insert(n), "duplicate counter {n}"));
        assert!(names.contains("rx_frames"));
        assert!(names.contains("conn4_hits"));
        assert!(names.contains("conn6_hits"));
        assert!(names.contains("sticky_learned"));
        assert!(names.contains("drop_wire_bad_ipv4_checksum"));
        let mut c = Counters::default();
        c.wire_drop(Error::BadIhl);
        c.drop_no_server = 2;
        c.tx_forward = 1;
        assert_eq!(c.drops(), 3);
        assert_eq!(c.accounted(), 4);
        assert_eq!(c.get("drop_wire_bad_ihl"), Some(1));
    }
}
