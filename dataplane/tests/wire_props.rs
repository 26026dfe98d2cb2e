//! Property tests of the wire layer: emit→parse round trips for every repr,
//! incremental checksum updates equal to full recomputation, parsers that
//! never panic, and truncations that are errors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tack_dataplane::wire::checksum;
use tack_dataplane::wire::ethernet::VlanTag;
use tack_dataplane::wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use tack_dataplane::wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use tack_dataplane::wire::ndisc::{NdiscRepr, NdiscRouterFlags, NeighborFlags};
use tack_dataplane::wire::rewrite::{SeqShift, rewrite_flow, rewrite_tcp_seq};
use tack_dataplane::wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
use tack_dataplane::wire::udp::{UdpPacket, UdpRepr};
use tack_dataplane::wire::{
    ArpOperation, ArpPacket, ArpRepr, ClassifyOptions, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr, FlowRewrite, IpProtocol, Ipv4L4, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    L3Kind, classify, classify_ipv4_l4, fuzz_parse,
};

fn mac() -> impl Strategy<Value = EthernetAddress> {
    any::<[u8; 6]>().prop_map(EthernetAddress)
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn vlan() -> impl Strategy<Value = Option<VlanTag>> {
    proptest::option::of(
        (0u8..8, any::<bool>(), 0u16..4096).prop_map(|(pcp, dei, vid)| VlanTag { pcp, dei, vid }),
    )
}

/// An IP address pair of one family.
fn addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (v4(), v4()).prop_map(|(a, b)| (IpAddr::V4(a), IpAddr::V4(b))),
        (v6(), v6()).prop_map(|(a, b)| (IpAddr::V6(a), IpAddr::V6(b))),
    ]
}

#[derive(Debug, Clone)]
struct TcpSpec {
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    mss: Option<u16>,
    ws: Option<u8>,
    sack: bool,
    ts: Option<(u32, u32)>,
    payload: Vec<u8>,
}

fn tcp_spec() -> impl Strategy<Value = TcpSpec> {
    (
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
        ),
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u8>()),
            any::<bool>(),
            proptest::option::of(any::<(u32, u32)>()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ),
    )
        .prop_map(
            |(
                (src_port, dst_port, seq, ack, flags, window, urgent),
                (mss, ws, sack, ts, payload),
            )| TcpSpec {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window,
                urgent,
                mss,
                ws,
                sack,
                ts,
                payload,
            },
        )
}

impl TcpSpec {
    fn repr(&self) -> TcpRepr<'_> {
        TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq_number: self.seq,
            ack_number: self.ack,
            flags: TcpFlags(self.flags),
            window_len: self.window,
            urgent_at: self.urgent,
            mss: self.mss,
            window_scale: self.ws,
            sack_permitted: self.sack,
            timestamps: self.ts,
            payload: &self.payload,
        }
    }
}

/// What goes above IP in a generated frame.
#[derive(Debug, Clone)]
enum L4Spec {
    Tcp(TcpSpec),
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: Vec<u8>,
        zero_csum: bool,
    },
    Echo {
        ident: u16,
        seq: u16,
        data: Vec<u8>,
    },
}

fn l4_spec() -> impl Strategy<Value = L4Spec> {
    prop_oneof![
        tcp_spec().prop_map(L4Spec::Tcp),
        (
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>()
        )
            .prop_map(|(src_port, dst_port, payload, zero_csum)| L4Spec::Udp {
                src_port,
                dst_port,
                payload,
                zero_csum
            }),
        (
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(ident, seq, data)| L4Spec::Echo { ident, seq, data }),
    ]
}

#[derive(Debug, Clone)]
struct FrameSpec {
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    vlan: Option<VlanTag>,
    addrs: (IpAddr, IpAddr),
    ttl: u8,
    l4: L4Spec,
    padding: usize,
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    (
        mac(),
        mac(),
        vlan(),
        addr_pair(),
        any::<u8>(),
        l4_spec(),
        0usize..8,
    )
        .prop_map(
            |(src_mac, dst_mac, vlan, addrs, ttl, l4, padding)| FrameSpec {
                src_mac,
                dst_mac,
                vlan,
                addrs,
                ttl,
                l4,
                padding,
            },
        )
}

/// Build a valid frame (all checksums right) with the reprs.
fn build(spec: &FrameSpec) -> Vec<u8> {
    let (src, dst) = spec.addrs;
    let v4 = src.is_ipv4();
    let mut l4 = vec![0u8; 2048];
    let (proto, n) = match &spec.l4 {
        L4Spec::Tcp(t) => (IpProtocol::TCP, t.repr().emit(&mut l4, &src, &dst).unwrap()),
        L4Spec::Udp {
            src_port,
            dst_port,
            payload,
            zero_csum,
        } => {
            let n = UdpRepr {
                src_port: *src_port,
                dst_port: *dst_port,
                payload,
            }
            .emit(&mut l4, &src, &dst)
            .unwrap();
            if *zero_csum && v4 {
                l4[6] = 0;
                l4[7] = 0;
            }
            (IpProtocol::UDP, n)
        }
        L4Spec::Echo { ident, seq, data } => match (src, dst) {
            (IpAddr::V4(_), _) => (
                IpProtocol::ICMP,
                Icmpv4Repr::EchoRequest {
                    ident: *ident,
                    seq_no: *seq,
                    data,
                }
                .emit(&mut l4)
                .unwrap(),
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => (
                IpProtocol::ICMPV6,
                Icmpv6Repr::EchoRequest {
                    ident: *ident,
                    seq_no: *seq,
                    data,
                }
                .emit(&mut l4, &s, &d)
                .unwrap(),
            ),
            _ => unreachable!(),
        },
    };
    l4.truncate(n);
    let eth = EthernetRepr {
        src_addr: spec.src_mac,
        dst_addr: spec.dst_mac,
        vlan: spec.vlan,
        ethertype: if v4 { EtherType::IPV4 } else { EtherType::IPV6 },
    };
    let mut f = vec![0u8; eth.header_len() + 40];
    let e = eth.emit(&mut f).unwrap();
    let ip_len = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol: proto,
            payload_len: n,
            ttl: spec.ttl,
            tos: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut f[e..])
        .unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: proto,
            payload_len: n,
            hop_limit: spec.ttl,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut f[e..])
        .unwrap(),
        _ => unreachable!(),
    };
    f.truncate(e + ip_len);
    f.extend_from_slice(&l4);
    f.extend(std::iter::repeat_n(0u8, spec.padding));
    f
}

/// Recompute every checksum of a frame from scratch (on a copy).
fn recomputed(frame: &[u8]) -> Vec<u8> {
    let c = classify(frame).unwrap();
    let mut b = frame.to_vec();
    if let Ok(mut ip) = Ipv4Packet::new_checked(&mut b[c.l3_offset..]) {
        ip.fill_checksum();
    }
    let seg = &mut b[c.l4_offset..c.l3_end];
    match c.protocol {
        IpProtocol::TCP => TcpPacket::new_checked(seg)
            .unwrap()
            .fill_checksum(&c.src_addr, &c.dst_addr)
            .unwrap(),
        IpProtocol::UDP => {
            let mut u = UdpPacket::new_checked(seg).unwrap();
            if u.checksum() != 0 {
                u.fill_checksum(&c.src_addr, &c.dst_addr).unwrap();
            }
        }
        IpProtocol::ICMP => Icmpv4Packet::new_checked(seg).unwrap().fill_checksum(),
        IpProtocol::ICMPV6 => {
            let (IpAddr::V6(s), IpAddr::V6(d)) = (c.src_addr, c.dst_addr) else {
                unreachable!()
            };
            Icmpv6Packet::new_checked(seg)
                .unwrap()
                .fill_checksum(&s, &d)
                .unwrap()
        }
        _ => {}
    }
    b
}

fn rewrite_for(spec: &FrameSpec) -> impl Strategy<Value = FlowRewrite> + use<> {
    let v4 = spec.addrs.0.is_ipv4();
    let addr = move || -> BoxedStrategy<Option<IpAddr>> {
        if v4 {
            proptest::option::of(v4_addr()).boxed()
        } else {
            proptest::option::of(v6_addr()).boxed()
        }
    };
    (
        addr(),
        addr(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(|(src_addr, dst_addr, src_port, dst_port)| FlowRewrite {
            src_addr,
            dst_addr,
            src_port,
            dst_port,
        })
}

fn v4_addr() -> impl Strategy<Value = IpAddr> {
    v4().prop_map(IpAddr::V4)
}

fn v6_addr() -> impl Strategy<Value = IpAddr> {
    v6().prop_map(IpAddr::V6)
}

fn spec_and_rewrite() -> impl Strategy<Value = (FrameSpec, FlowRewrite)> {
    frame_spec().prop_flat_map(|s| {
        let rw = rewrite_for(&s);
        (Just(s), rw)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Incremental updates (RFC 1624) give exactly the checksum a full
    /// recomputation gives, for TCP, UDP (zero checksum kept), ICMP echo and
    /// ICMPv6 echo, over IPv4 and IPv6, for any address/port rewrite.
    #[test]
    fn incremental_rewrite_equals_recomputation((spec, rw) in spec_and_rewrite()) {
        let frame = build(&spec);
        prop_assert_eq!(recomputed(&frame), frame.clone(), "generator builds valid checksums");
        let c = classify(&frame).unwrap();
        let mut b = frame.clone();
        rewrite_flow(&mut b, &c, &rw).unwrap();
        prop_assert_eq!(recomputed(&b), b.clone());
        let c2 = classify(&b).unwrap();
        prop_assert_eq!(c2.src_addr, rw.src_addr.unwrap_or(c.src_addr));
        prop_assert_eq!(c2.dst_addr, rw.dst_addr.unwrap_or(c.dst_addr));
        match spec.l4 {
            L4Spec::Echo { ident, .. } => {
                let id = rw.src_port.or(rw.dst_port).unwrap_or(ident);
                prop_assert_eq!((c2.src_port, c2.dst_port), (id, id));
            }
            L4Spec::Udp { zero_csum: true, .. } if spec.addrs.0.is_ipv4() => {
                prop_assert_eq!(&b[c.l4_offset + 6..c.l4_offset + 8], &[0u8, 0][..]);
            }
            _ => {
                prop_assert_eq!(c2.src_port, rw.src_port.unwrap_or(c.src_port));
                prop_assert_eq!(c2.dst_port, rw.dst_port.unwrap_or(c.dst_port));
            }
        }
    }

    /// A SYN proxy's sequence shift keeps the TCP checksum exact and moves
    /// the sequence and acknowledgement numbers by what it says (modulo
    /// 2^32); other protocols are refused untouched.
    #[test]
    fn sequence_shift_equals_recomputation(spec in frame_spec(), seq in any::<u32>(), ack in any::<u32>()) {
        let frame = build(&spec);
        let c = classify(&frame).unwrap();
        let mut b = frame.clone();
        let r = rewrite_tcp_seq(&mut b, &c, SeqShift { seq, ack });
        if c.protocol != IpProtocol::TCP {
            prop_assert!(r.is_err());
            prop_assert_eq!(b, frame);
            return Ok(());
        }
        r.unwrap();
        prop_assert_eq!(recomputed(&b), b.clone());
        let old = TcpPacket::new_checked(&frame[c.l4_offset..c.l3_end]).unwrap();
        let new = TcpPacket::new_checked(&b[c.l4_offset..c.l3_end]).unwrap();
        prop_assert_eq!(new.seq_number(), old.seq_number().wrapping_add(seq));
        prop_assert_eq!(new.ack_number(), old.ack_number().wrapping_add(ack));
    }

    /// Changes summed with `delta16`/`delta32` and folded once give exactly
    /// what updating change by change gives, +0 and -0 included.
    #[test]
    fn batched_updates_equal_sequential(hc in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
                                        a in any::<u32>(), b in any::<u32>(),
                                        c in prop_oneof![Just(0u16), Just(0xffff), any::<u16>()],
                                        d in any::<u16>()) {
        let seq = checksum::update16(checksum::update32(hc, a, b), c, d);
        let batched = !checksum::fold(u64::from(!hc) + checksum::delta32(a, b) + checksum::delta16(c, d));
        prop_assert_eq!(batched, seq);
    }

    /// `fold` is RFC 1071's end-around-carry loop, for any accumulator
    /// (zero only for zero, 0xffff for any other multiple of 0xffff).
    #[test]
    fn fold_is_the_rfc1071_loop(acc in prop_oneof![
        Just(0u64), Just(u64::MAX), Just(0xffff), Just(0x1_0000), Just(0xffff_ffff),
        Just(0x1_0000_0000), Just(0xffff_0000_ffff), (0u64..1 << 36), any::<u64>(),
    ]) {
        let mut r = u128::from(acc);
        while r >> 16 != 0 {
            r = (r & 0xffff) + (r >> 16);
        }
        prop_assert_eq!(u128::from(checksum::fold(acc)), r);
    }

    /// The checksum primitives agree with recomputation on raw data.
    #[test]
    fn checksum_primitives(mut data in proptest::collection::vec(any::<u8>(), 20..200), word in 0usize..8,
                           new16 in any::<u16>(), new32 in any::<u32>(), new128 in any::<u128>()) {
        // Put a non-zero byte in so that +0/-0 ambiguity cannot arise.
        data[0] |= 1;
        let hc = checksum::checksum(&data);
        let off = word * 2;
        let old16 = u16::from_be_bytes([data[off], data[off + 1]]);
        let mut d = data.clone();
        d[off..off + 2].copy_from_slice(&new16.to_be_bytes());
        d[0] |= 1;
        let fixed = u16::from_be_bytes([d[0], d[1]]);
        let hc16 = checksum::update16(hc, u16::from_be_bytes([data[0], data[1]]), fixed);
        let hc16 = if off == 0 { hc16 } else { checksum::update16(hc16, old16, new16) };
        let mut expect = data.clone();
        expect[0..2].copy_from_slice(&fixed.to_be_bytes());
        if off != 0 { expect[off..off + 2].copy_from_slice(&new16.to_be_bytes()); }
        prop_assert_eq!(hc16, checksum::checksum(&expect));

        let old32 = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let mut e = data.clone();
        e[4..8].copy_from_slice(&new32.to_be_bytes());
        prop_assert_eq!(checksum::update32(hc, old32, new32), checksum::checksum(&e));
        prop_assert_eq!(
            checksum::update_v4addr(hc, Ipv4Addr::from(old32), Ipv4Addr::from(new32)),
            checksum::checksum(&e)
        );

        if data.len() >= 20 {
            let old = Ipv6Addr::from(<[u8; 16]>::try_from(&data[2..18]).unwrap());
            let mut e = data.clone();
            e[2..18].copy_from_slice(&new128.to_be_bytes());
            prop_assert_eq!(checksum::update_v6addr(hc, &old, &Ipv6Addr::from(new128)), checksum::checksum(&e));
        }
        // rewrite_bytes at any (odd) offset.
        let at = (word * 3 + 1) % (data.len() - 4);
        let mut r = data.clone();
        let h = checksum::rewrite_bytes(&mut r, at, &new32.to_be_bytes()[..3], hc).unwrap();
        prop_assert_eq!(checksum::combine(checksum::sum(&r), h), 0xffff);
    }

    /// Parsers, classify, reprs and rewriters never panic on arbitrary bytes.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..160)) {
        fuzz_parse(&data);
    }

    /// Valid frames with a few random byte changes never panic either (and
    /// keep every fuzz invariant), which reaches deeper than random bytes.
    #[test]
    fn mutated_frames_never_panic(spec in frame_spec(),
                                  edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut f = build(&spec);
        for (at, v) in edits {
            let i = at % f.len();
            f[i] = v;
        }
        fuzz_parse(&f);
    }

    /// The fast IPv4 classifier takes every valid unfragmented IPv4 TCP or
    /// UDP frame without IP options, and gives what `classify` gives.
    #[test]
    fn fast_ipv4_classification_matches(spec in frame_spec()) {
        let f = build(&spec);
        let c = classify(&f).unwrap();
        let common = c.l3 == L3Kind::Ipv4
            && (c.protocol == IpProtocol::TCP || c.protocol == IpProtocol::UDP)
            && c.l4_offset == c.l3_offset + 20;
        let fast = classify_ipv4_l4(&f, ClassifyOptions::default());
        prop_assert_eq!(fast.is_some(), common);
        if let Some(fast) = fast {
            prop_assert_eq!(fast.classified(), c);
            prop_assert_eq!(Ipv4L4::of(&c), Some(fast));
        }
    }

    /// Every truncation of a valid frame inside its IP packet is an error.
    #[test]
    fn truncations_are_errors(spec in frame_spec(), cut in any::<usize>()) {
        let f = build(&spec);
        let c = classify(&f).unwrap();
        prop_assert_eq!(c.l3_end, f.len() - spec.padding);
        let cut = cut % c.l3_end;
        prop_assert!(classify(&f[..cut]).is_err());
        fuzz_parse(&f[..cut]);
    }

    #[test]
    fn ethernet_roundtrip(src in mac(), dst in mac(), vlan in vlan(), et in any::<u16>()) {
        prop_assume!(!EtherType(et).is_vlan());
        let r = EthernetRepr { src_addr: src, dst_addr: dst, vlan, ethertype: EtherType(et) };
        let mut b = [0u8; 18];
        let n = r.emit(&mut b).unwrap();
        prop_assert_eq!(n, r.header_len());
        let f = EthernetFrame::new_checked(&b[..n]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&f).unwrap(), r);
        prop_assert!(r.emit(&mut b[..n - 1]).is_err());
    }

    #[test]
    fn arp_roundtrip(op in 1u16..3, sha in mac(), spa in v4(), tha in mac(), tpa in v4()) {
        let r = ArpRepr {
            operation: ArpOperation(op),
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_hardware_addr: tha,
            target_protocol_addr: tpa,
        };
        let mut b = [0u8; 28];
        r.emit(&mut b).unwrap();
        prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()).unwrap(), r);
        let reply = r.reply(tha);
        prop_assert_eq!((reply.source_protocol_addr, reply.target_protocol_addr), (tpa, spa));
        prop_assert_eq!((reply.source_hardware_addr, reply.target_hardware_addr), (tha, sha));
        prop_assert_eq!(reply.operation, ArpOperation::REPLY);
    }

    #[test]
    fn ipv4_roundtrip(s in v4(), d in v4(), p in any::<u8>(), len in 0usize..1500, ttl in any::<u8>(),
                      tos in any::<u8>(), ident in any::<u16>(), df in any::<bool>()) {
        let r = Ipv4Repr { src_addr: s, dst_addr: d, protocol: IpProtocol(p), payload_len: len, ttl, tos, ident, dont_frag: df };
        let mut b = vec![0u8; 20 + len];
        r.emit(&mut b).unwrap();
        let pk = Ipv4Packet::new_checked(&b[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&pk).unwrap(), r);
    }

    #[test]
    fn ipv6_roundtrip(s in v6(), d in v6(), nh in any::<u8>(), len in 0usize..1500, hl in any::<u8>(),
                      tc in any::<u8>(), fl in 0u32..0x10_0000) {
        let r = Ipv6Repr { src_addr: s, dst_addr: d, next_header: IpProtocol(nh), payload_len: len, hop_limit: hl, traffic_class: tc, flow_label: fl };
        let mut b = vec![0u8; 40 + len];
        r.emit(&mut b).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn tcp_roundtrip(t in tcp_spec(), (s, d) in addr_pair()) {
        let r = t.repr();
        let mut b = vec![0u8; r.segment_len()];
        r.emit(&mut b, &s, &d).unwrap();
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        prop_assert_eq!(TcpRepr::parse(&p, &s, &d).unwrap(), r);
        prop_assert_eq!(p.mss().unwrap(), t.mss);
    }

    /// Clamping the MSS keeps the checksum valid and never raises it.
    #[test]
    fn mss_clamp_keeps_checksum(t in tcp_spec(), (s, d) in addr_pair(), max in any::<u16>()) {
        let r = t.repr();
        let mut b = vec![0u8; r.segment_len()];
        r.emit(&mut b, &s, &d).unwrap();
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        let old = p.clamp_mss(max).unwrap();
        prop_assert!(p.verify_checksum(&s, &d));
        match t.mss {
            Some(m) if m > max => { prop_assert_eq!(old, Some(m)); prop_assert_eq!(p.mss().unwrap(), Some(max)); }
            m => { prop_assert_eq!(old, None); prop_assert_eq!(p.mss().unwrap(), m); }
        }
    }

    #[test]
    fn udp_roundtrip(sp in any::<u16>(), dp in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..100),
                     (s, d) in addr_pair()) {
        let r = UdpRepr { src_port: sp, dst_port: dp, payload: &payload };
        let mut b = vec![0u8; r.len()];
        r.emit(&mut b, &s, &d).unwrap();
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        prop_assert_ne!(p.checksum(), 0);
        prop_assert_eq!(UdpRepr::parse(&p, &s, &d).unwrap(), r);
    }

    #[test]
    fn icmpv4_roundtrip(kind in 0u8..4, a in any::<u16>(), b in any::<u16>(), code in 0u8..2,
                        data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let r = match kind {
            0 => Icmpv4Repr::EchoRequest { ident: a, seq_no: b, data: &data },
            1 => Icmpv4Repr::EchoReply { ident: a, seq_no: b, data: &data },
            2 => Icmpv4Repr::DstUnreachable { code: 4, next_hop_mtu: a, original: &data },
            _ => Icmpv4Repr::TimeExceeded { code, original: &data },
        };
        let mut buf = vec![0u8; r.len()];
        r.emit(&mut buf).unwrap();
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Icmpv4Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn icmpv6_roundtrip(kind in 0u8..10, a in any::<u16>(), b in any::<u32>(), code in any::<u8>(),
                        data in proptest::collection::vec(any::<u8>(), 0..64),
                        s in v6(), d in v6(), ll in proptest::option::of(mac()), flags in any::<u8>()) {
        let target = Ipv6Addr::from(u128::from(b) << 8 | 0x2001 << 112);
        let r = match kind {
            0 => Icmpv6Repr::EchoRequest { ident: a, seq_no: b as u16, data: &data },
            1 => Icmpv6Repr::EchoReply { ident: a, seq_no: b as u16, data: &data },
            2 => Icmpv6Repr::DstUnreachable { code, original: &data },
            3 => Icmpv6Repr::PacketTooBig { mtu: b, original: &data },
            4 => Icmpv6Repr::TimeExceeded { code, original: &data },
            5 => Icmpv6Repr::ParamProblem { code, pointer: b, original: &data },
            6 => Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { target_addr: target, lladdr: ll }),
            7 => Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert { flags: NeighborFlags(flags & 0xe0), target_addr: target, lladdr: ll }),
            8 => Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit { lladdr: ll }),
            _ => Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
                hop_limit: code, flags: NdiscRouterFlags(flags), router_lifetime: a, reachable_time: b,
                retrans_time: b.rotate_left(7), lladdr: ll, mtu: ll.map(|_| b), prefix_count: 0,
            }),
        };
        let mut buf = vec![0u8; r.len()];
        r.emit(&mut buf, &s, &d).unwrap();
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum(&s, &d));
        prop_assert_eq!(Icmpv6Repr::parse(&p, &s, &d).unwrap(), r);
    }
}
