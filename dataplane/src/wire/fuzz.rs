//! The body of the `wire_parse` fuzz target, kept in the crate so that
//! `cargo test` replays the committed corpus without nightly.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::arp::{ArpPacket, ArpRepr};
use super::checksum;
use super::classify::{
    ClassifyOptions, FragStatus, L3Kind, classify, classify_ipv4_l4, classify_with,
};
use super::embedded::EmbeddedFlow;
use super::ethernet::{EthernetFrame, EthernetRepr};
use super::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use super::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use super::ip::IpProtocol;
use super::ipv4::{Ipv4Packet, Ipv4Repr};
use super::ipv6::{Ipv6Packet, Ipv6Repr};
use super::ndisc::NdiscRepr;
use super::rewrite::{FlowRewrite, rewrite_flow, rewrite_icmp_error};
use super::tcp::{TcpPacket, TcpRepr};
use super::tunnel;
use super::udp::{UdpPacket, UdpRepr};

/// Run every parser, the classifier, and the in-place rewriters on arbitrary
/// bytes, asserting the invariants that must hold for any input:
///
/// * nothing panics;
/// * whatever parses re-emits to something that parses back to the same repr;
/// * a rewrite of a classified frame keeps it classifiable with the same
///   offsets and the new addresses/ports, and keeps every checksum exactly
///   as valid (or invalid) as it was;
/// * the MSS clamp and TTL decrement keep checksums valid;
/// * whenever the fast IPv4 classifier accepts a frame, the full one
///   accepts it too, with the same result.
///
/// Panics (that is, reports a bug to the fuzzer) if an invariant fails.
pub fn fuzz_parse(data: &[u8]) {
    let _ = classify(data);
    for verify_ipv4_checksum in [true, false] {
        let opts = ClassifyOptions {
            verify_ipv4_checksum,
        };
        if let Some(f) = classify_ipv4_l4(data, opts) {
            assert_eq!(
                Ok(f.classified()),
                classify_with(data, opts),
                "fast IPv4 classification"
            );
        }
    }
    for off in [0usize, 14, 18] {
        if let Some(b) = data.get(off..) {
            parse_all(b);
        }
    }
    if let Ok(c) = classify_with(
        data,
        ClassifyOptions {
            verify_ipv4_checksum: false,
        },
    ) {
        check_classified(data, &c);
    }
}

fn seed(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn any_addr(v4: bool, s: u64) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from((s >> 7) as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(
            u128::from(s) << 64 | u128::from(s.rotate_left(17)),
        ))
    }
}

/// A sum verifies if it is zero in one's complement (either representation).
fn ok(sum: u16) -> bool {
    sum == 0xffff || sum == 0
}

struct Sums {
    ip: Option<bool>,
    l4: Option<bool>,
}

fn sums(frame: &[u8], c: &super::Classified) -> Sums {
    let ip = (c.l3 == L3Kind::Ipv4).then(|| {
        let hl = usize::from(frame[c.l3_offset] & 0x0f) * 4;
        ok(checksum::sum(&frame[c.l3_offset..c.l3_offset + hl]))
    });
    let seg = &frame[c.l4_offset..c.l3_end];
    let l4 = if c.frag != FragStatus::NotFragment || !c.has_l4_header() {
        None
    } else if c.protocol == IpProtocol::ICMP {
        Some(ok(checksum::sum(seg)))
    } else if c.protocol == IpProtocol::UDP && frame[c.l4_offset + 6..c.l4_offset + 8] == [0, 0] {
        None
    } else {
        let len = if c.protocol == IpProtocol::UDP {
            u32::from(u16::from_be_bytes([
                frame[c.l4_offset + 4],
                frame[c.l4_offset + 5],
            ]))
        } else {
            seg.len() as u32
        };
        let seg = seg.get(..len as usize).unwrap_or(seg);
        checksum::pseudo_header(&c.src_addr, &c.dst_addr, c.protocol.0, len)
            .ok()
            .map(|ph| ok(checksum::combine(ph, checksum::sum(seg))))
    };
    Sums { ip, l4 }
}

fn check_classified(data: &[u8], c: &super::Classified) {
    assert!(c.l3_offset <= c.l4_offset && c.l4_offset <= c.l3_end && c.l3_end <= data.len());
    if c.l3 == L3Kind::Arp {
        let mut buf = data.to_vec();
        assert!(rewrite_flow(&mut buf, c, &FlowRewrite::default()).is_err());
        return;
    }
    let v4 = c.l3 == L3Kind::Ipv4;
    let s = seed(data);
    let before = sums(data, c);
    let has_ports = c.has_l4_header()
        && (matches!(c.protocol, IpProtocol::TCP | IpProtocol::UDP)
            || (c.protocol == IpProtocol::ICMP && matches!(c.icmp_type, 0 | 8))
            || (c.protocol == IpProtocol::ICMPV6 && matches!(c.icmp_type, 128 | 129)));
    let rw = FlowRewrite {
        src_addr: Some(any_addr(v4, s)),
        dst_addr: (s & 1 == 0).then(|| any_addr(v4, s.rotate_left(29))),
        src_port: has_ports.then_some((s >> 3) as u16),
        dst_port: (has_ports && s & 2 == 0).then_some((s >> 21) as u16),
    };
    let mut buf = data.to_vec();
    rewrite_flow(&mut buf, c, &rw).expect("rewrite of a classified frame");
    let c2 = classify_with(
        &buf,
        ClassifyOptions {
            verify_ipv4_checksum: false,
        },
    )
    .expect("rewritten frame still classifies");
    assert_eq!(
        (c2.l3_offset, c2.l4_offset, c2.l3_end, c2.protocol),
        (c.l3_offset, c.l4_offset, c.l3_end, c.protocol)
    );
    assert_eq!(Some(c2.src_addr), rw.src_addr);
    assert_eq!(c2.dst_addr, rw.dst_addr.unwrap_or(c.dst_addr));
    if has_ports && matches!(c.protocol, IpProtocol::TCP | IpProtocol::UDP) {
        assert_eq!(Some(c2.src_port), rw.src_port);
        assert_eq!(c2.dst_port, rw.dst_port.unwrap_or(c.dst_port));
    }
    let after = sums(&buf, &c2);
    assert_eq!(before.ip, after.ip, "IPv4 header checksum validity changed");
    assert_eq!(before.l4, after.l4, "L4 checksum validity changed");

    // Wrong family / ports on a frame without ports are refused untouched.
    let bad = FlowRewrite {
        src_addr: Some(any_addr(!v4, s)),
        ..FlowRewrite::default()
    };
    let mut buf2 = data.to_vec();
    assert!(rewrite_flow(&mut buf2, c, &bad).is_err());
    assert_eq!(buf2, data);

    // TTL decrement and MSS clamp keep checksums valid.
    if v4 {
        let mut b = data.to_vec();
        if let Ok(mut p) = Ipv4Packet::new_checked(&mut b[c.l3_offset..]) {
            p.decrement_ttl();
        }
        assert_eq!(sums(&b, c).ip, before.ip);
    }
    if c.protocol == IpProtocol::TCP && c.has_l4_header() {
        let mut b = data.to_vec();
        let max = (s >> 40) as u16;
        if let Ok(mut t) = TcpPacket::new_checked(&mut b[c.l4_offset..c.l3_end]) {
            let before_mss = t.mss();
            match t.clamp_mss(max) {
                Ok(Some(old)) => {
                    assert!(old > max);
                    assert_eq!(before_mss, Ok(Some(old)));
                    assert_eq!(t.mss(), Ok(Some(max)));
                }
                Ok(None) => {
                    assert_eq!(t.mss(), before_mss);
                    assert!(before_mss.is_ok_and(|m| m.is_none_or(|m| m <= max)));
                }
                Err(_) => assert!(before_mss.is_err()),
            }
        }
        assert_eq!(
            sums(&b, c).l4,
            before.l4,
            "MSS clamp changed checksum validity"
        );
    }
    if c.is_icmp_error() {
        let mut b = data.to_vec();
        let inner = FlowRewrite {
            src_addr: Some(any_addr(v4, s.rotate_left(5))),
            dst_addr: Some(any_addr(v4, s.rotate_left(11))),
            src_port: None,
            dst_port: None,
        };
        if rewrite_icmp_error(&mut b, c, &inner).is_ok() {
            assert_eq!(
                sums(&b, c).l4,
                before.l4,
                "ICMP error rewrite changed checksum validity"
            );
        }
    }
    // Encapsulation of the IP packet.
    let inner = &data[c.l3_offset..c.l3_end];
    let mut hdr = [0u8; 40];
    if tunnel::emit_ipv4_outer(
        &mut hdr,
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::BROADCAST,
        inner,
        64,
        1,
    )
    .is_ok()
    {
        assert!(ok(checksum::sum(&hdr[..20])));
    }
    let _ = tunnel::emit_ipv6_outer(
        &mut hdr,
        Ipv6Addr::LOCALHOST,
        Ipv6Addr::UNSPECIFIED,
        inner,
        64,
        0,
    );
}

fn parse_all(b: &[u8]) {
    let mut out = vec![0u8; b.len() + 64];
    if let Ok(f) = EthernetFrame::new_checked(b) {
        let r = EthernetRepr::parse(&f).expect("ethernet repr");
        let n = r.emit(&mut out).expect("ethernet emit");
        let f2 = EthernetFrame::new_checked(&out[..n]).expect("re-parse");
        let r2 = EthernetRepr::parse(&f2).expect("ethernet repr 2");
        // A second stacked tag is not represented; otherwise exact.
        if !r.ethertype.is_vlan() {
            assert_eq!(r, r2);
        }
        let _ = f.payload();
    }
    if let Ok(p) = ArpPacket::new_checked(b) {
        let _ = (p.source_hardware_addr(), p.target_protocol_addr());
        if let Ok(r) = ArpRepr::parse(&p) {
            let n = r.emit(&mut out).expect("arp emit");
            assert_eq!(&out[..n], &b[..n]);
            let _ = r.reply(super::EthernetAddress::BROADCAST);
        }
    }
    let _ = EmbeddedFlow::parse_v4(b);
    let _ = EmbeddedFlow::parse_v6(b);
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        for _ in p.option_iter() {}
        let _ = p.payload();
        if let Ok(r) = Ipv4Repr::parse(&p) {
            r.emit(&mut out).expect("ipv4 emit");
            let p2 = Ipv4Packet::new_checked(&out[..]);
            // Emitted total length may exceed `out` only if payload_len does.
            if let Ok(p2) = p2 {
                assert_eq!(Ipv4Repr::parse(&p2).expect("ipv4 reparse"), r);
            }
        }
        let src = IpAddr::V4(p.src_addr());
        let dst = IpAddr::V4(p.dst_addr());
        l4_all(p.payload(), src, dst);
    }
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let r = Ipv6Repr::parse(&p).expect("ipv6 repr");
        r.emit(&mut out).expect("ipv6 emit");
        let p2 = Ipv6Packet::new_checked(&out[..]);
        if let Ok(p2) = p2 {
            assert_eq!(Ipv6Repr::parse(&p2).expect("ipv6 reparse"), r);
        }
        if let Ok(u) = p.upper() {
            let src = IpAddr::V6(p.src_addr());
            let dst = IpAddr::V6(p.dst_addr());
            if !u.is_non_first_fragment() {
                l4_all(p.packet().get(u.offset..).unwrap_or(&[]), src, dst);
            }
        }
    }
    l4_all(
        b,
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
    );
    l4_all(
        b,
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    );
}

fn l4_all(b: &[u8], src: IpAddr, dst: IpAddr) {
    let mut seg = b.to_vec();
    let mut out = vec![0u8; b.len() + 64];
    if let Ok(mut t) = TcpPacket::new_checked(&mut seg[..]) {
        for _ in t.option_iter() {}
        let _ = t.mss();
        if t.fill_checksum(&src, &dst).is_ok() {
            assert!(t.verify_checksum(&src, &dst));
        }
        let t = TcpPacket::new_checked(&seg[..]).expect("still valid");
        if let Ok(r) = TcpRepr::parse(&t, &src, &dst) {
            let n = r.emit(&mut out, &src, &dst).expect("tcp emit");
            let t2 = TcpPacket::new_checked(&out[..n]).expect("tcp reparse");
            assert_eq!(TcpRepr::parse(&t2, &src, &dst).expect("tcp repr 2"), r);
        }
    }
    let mut seg = b.to_vec();
    if let Ok(mut u) = UdpPacket::new_checked(&mut seg[..]) {
        if u.fill_checksum(&src, &dst).is_ok() {
            assert!(u.verify_checksum(&src, &dst));
        }
        let u = UdpPacket::new_checked(&seg[..]).expect("still valid");
        if let Ok(r) = UdpRepr::parse(&u, &src, &dst) {
            let n = r.emit(&mut out, &src, &dst).expect("udp emit");
            let u2 = UdpPacket::new_checked(&out[..n]).expect("udp reparse");
            assert_eq!(UdpRepr::parse(&u2, &src, &dst).expect("udp repr 2"), r);
        }
    }
    let mut seg = b.to_vec();
    if let Ok(mut i) = Icmpv4Packet::new_checked(&mut seg[..]) {
        let _ = i.embedded();
        i.fill_checksum();
        let i = Icmpv4Packet::new_checked(&seg[..]).expect("still valid");
        assert!(i.verify_checksum());
        if let Ok(r) = Icmpv4Repr::parse(&i) {
            let n = r.emit(&mut out).expect("icmp emit");
            let i2 = Icmpv4Packet::new_checked(&out[..n]).expect("icmp reparse");
            assert_eq!(Icmpv4Repr::parse(&i2).expect("icmp repr 2"), r);
        }
    }
    if let (IpAddr::V6(s6), IpAddr::V6(d6)) = (src, dst) {
        let mut seg = b.to_vec();
        if let Ok(mut i) = Icmpv6Packet::new_checked(&mut seg[..]) {
            let _ = i.embedded();
            let _ = NdiscRepr::parse(i.message());
            if i.fill_checksum(&s6, &d6).is_ok() {
                let i = Icmpv6Packet::new_checked(&seg[..]).expect("still valid");
                assert!(i.verify_checksum(&s6, &d6));
                if let Ok(r) = Icmpv6Repr::parse(&i, &s6, &d6) {
                    let n = r.emit(&mut out, &s6, &d6).expect("icmpv6 emit");
                    let i2 = Icmpv6Packet::new_checked(&out[..n]).expect("icmpv6 reparse");
                    let r2 = Icmpv6Repr::parse(&i2, &s6, &d6).expect("icmpv6 repr 2");
                    // Router adverts drop prefix options on emit.
                    match (r, r2) {
                        (
                            Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert { .. }),
                            Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert { .. }),
                        ) => {}
                        _ => assert_eq!(r2, r),
                    }
                }
            }
        }
    }
}
