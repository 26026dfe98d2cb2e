//! The nodes' messages, one per UDP datagram on the cluster's sync port:
//!
//! ```text
//! "TKC1" | kind u8 | sender node u16 | sequence u32 | body | HMAC-SHA256 (first 16 bytes)
//! kind 1, heartbeat: state u8 (0 active, 1 draining)
//! kind 2, records:   count u16, then each record:
//!   1 opened / 2 closed: service, client addr, client port u16, VIP port u16,
//!                        server, local (flag u8, addr, port u16)
//!   4 opened by the SYN proxy: as 1, then the sequence shift u32
//!   3 sticky:            service, key addr, key prefix u8, server
//!   service: VIP addr, IP protocol u8, port flag u8, port u16
//!   server:  addr, port flag u8, port u16
//!   addr:    family u8 (4 or 6), 4 or 16 bytes
//! ```
//!
//! All integers big-endian. The MAC covers everything before it, keyed
//! with the cluster's secret: a datagram that does not verify is dropped
//! and counted, never decoded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tack_dataplane::model::{Protocol, ServiceIdent};
use tack_dataplane::pipeline::{ConnRecord, FlowEvent, ServerIdent, StickyRecord};
use tack_dataplane::sticky::ClientKey;

const MAGIC: &[u8; 4] = b"TKC1";
const MAC_LEN: usize = 16;
/// Most bytes in a datagram (fits a 1500-byte MTU with IPv4 and UDP headers).
pub const MAX_DATAGRAM: usize = 1400;

/// A node's state in its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Takes new flows.
    Active,
    /// Takes no new flows; keeps its established ones.
    Draining,
}

/// What a datagram says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// I am alive, in this state.
    Heartbeat(NodeState),
    /// Flow state.
    Records(Vec<FlowEvent>),
}

/// A datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender's node id.
    pub node: u16,
    /// The sender's sequence number.
    pub seq: u32,
    /// What it says.
    pub body: Body,
}

/// Why a datagram was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Too short, or not Tack's.
    #[error("not a cluster message")]
    NotOurs,
    /// The MAC does not verify (another key, or altered).
    #[error("authentication failed")]
    BadMac,
    /// The body is malformed.
    #[error("malformed body")]
    Malformed,
}

fn mac(key: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

fn put_addr(b: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => {
            b.push(4);
            b.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            b.push(6);
            b.extend_from_slice(&a.octets());
        }
    }
}

fn put_port(b: &mut Vec<u8>, p: Option<u16>) {
    b.push(u8::from(p.is_some()));
    b.extend_from_slice(&p.unwrap_or(0).to_be_bytes());
}

fn put_service(b: &mut Vec<u8>, s: &ServiceIdent) {
    put_addr(b, s.vip);
    b.push(s.protocol.ip_proto());
    put_port(b, s.port);
}

fn put_server(b: &mut Vec<u8>, s: &ServerIdent) {
    put_addr(b, s.addr);
    put_port(b, s.port);
}

/// Appends record `r` to `b`.
pub fn put_record(b: &mut Vec<u8>, r: &FlowEvent) {
    match r {
        FlowEvent::Opened(c) | FlowEvent::Closed(c) => {
            b.push(match (r, c.seq_shift) {
                (FlowEvent::Opened(_), Some(_)) => 4,
                (FlowEvent::Opened(_), None) => 1,
                _ => 2,
            });
            put_service(b, &c.service);
            put_addr(b, c.client);
            b.extend_from_slice(&c.client_port.to_be_bytes());
            b.extend_from_slice(&c.vip_port.to_be_bytes());
            put_server(b, &c.server);
            match c.local {
                Some((a, p)) => {
                    b.push(1);
                    put_addr(b, a);
                    b.extend_from_slice(&p.to_be_bytes());
                }
                None => b.push(0),
            }
            if let (FlowEvent::Opened(_), Some(shift)) = (r, c.seq_shift) {
                b.extend_from_slice(&shift.to_be_bytes());
            }
        }
        FlowEvent::Sticky(s) => {
            b.push(3);
            put_service(b, &s.service);
            put_addr(b, s.key.addr);
            b.push(s.key.prefix);
            put_server(b, &s.server);
        }
    }
}

/// The most bytes one record takes.
pub const MAX_RECORD: usize = 1 + (17 + 1 + 3) + 17 + 4 + (17 + 3) + (1 + 17 + 2);

/// Encodes and authenticates `m` with `key`.
pub fn encode(m: &Message, key: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(MAGIC);
    b.push(match m.body {
        Body::Heartbeat(_) => 1,
        Body::Records(_) => 2,
    });
    b.extend_from_slice(&m.node.to_be_bytes());
    b.extend_from_slice(&m.seq.to_be_bytes());
    match &m.body {
        Body::Heartbeat(s) => b.push(match s {
            NodeState::Active => 0,
            NodeState::Draining => 1,
        }),
        Body::Records(rs) => {
            b.extend_from_slice(&(rs.len() as u16).to_be_bytes());
            for r in rs {
                put_record(&mut b, r);
            }
        }
    }
    let tag = mac(key, &b);
    b.extend_from_slice(&tag);
    b
}

/// A reader over a body.
struct Rd<'a> {
    b: &'a [u8],
}

impl Rd<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Malformed);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let s: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
        Ok(u32::from_be_bytes(s))
    }
    fn addr(&mut self) -> Result<IpAddr, WireError> {
        match self.u8()? {
            4 => {
                let s: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
                Ok(IpAddr::V4(Ipv4Addr::from(s)))
            }
            6 => {
                let s: [u8; 16] = self.take(16)?.try_into().expect("16 bytes");
                Ok(IpAddr::V6(Ipv6Addr::from(s)))
            }
            _ => Err(WireError::Malformed),
        }
    }
    fn port(&mut self) -> Result<Option<u16>, WireError> {
        let present = self.u8()?;
        let p = self.u16()?;
        match present {
            0 => Ok(None),
            1 => Ok(Some(p)),
            _ => Err(WireError::Malformed),
        }
    }
    fn service(&mut self) -> Result<ServiceIdent, WireError> {
        let vip = self.addr()?;
        let protocol = Protocol::from_ip_proto(self.u8()?).ok_or(WireError::Malformed)?;
        let port = self.port()?;
        Ok(ServiceIdent {
            vip,
            protocol,
            port,
        })
    }
    fn server(&mut self) -> Result<ServerIdent, WireError> {
        Ok(ServerIdent {
            addr: self.addr()?,
            port: self.port()?,
        })
    }
    fn record(&mut self) -> Result<FlowEvent, WireError> {
        let kind = self.u8()?;
        match kind {
            1 | 2 | 4 => {
                let mut c = ConnRecord {
                    service: self.service()?,
                    client: self.addr()?,
                    client_port: self.u16()?,
                    vip_port: self.u16()?,
                    server: self.server()?,
                    local: match self.u8()? {
                        0 => None,
                        1 => Some((self.addr()?, self.u16()?)),
                        _ => return Err(WireError::Malformed),
                    },
                    seq_shift: None,
                };
                if kind == 4 {
                    c.seq_shift = Some(self.u32()?);
                }
                Ok(if kind == 2 {
                    FlowEvent::Closed(c)
                } else {
                    FlowEvent::Opened(c)
                })
            }
            3 => Ok(FlowEvent::Sticky(StickyRecord {
                service: self.service()?,
                key: ClientKey {
                    addr: self.addr()?,
                    prefix: self.u8()?,
                },
                server: self.server()?,
            })),
            _ => Err(WireError::Malformed),
        }
    }
}

/// Verifies and decodes a datagram.
pub fn decode(d: &[u8], key: &[u8]) -> Result<Message, WireError> {
    if d.len() < 4 + 1 + 2 + 4 + 1 + MAC_LEN || &d[..4] != MAGIC {
        return Err(WireError::NotOurs);
    }
    let (data, tag) = d.split_at(d.len() - MAC_LEN);
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.verify_truncated_left(tag)
        .map_err(|_| WireError::BadMac)?;
    let mut r = Rd { b: &data[4..] };
    let kind = r.u8()?;
    let node = r.u16()?;
    let seq = r.u32()?;
    let body = match kind {
        1 => Body::Heartbeat(match r.u8()? {
            0 => NodeState::Active,
            1 => NodeState::Draining,
            _ => return Err(WireError::Malformed),
        }),
        2 => {
            let n = r.u16()?;
            let mut v = Vec::with_capacity(usize::from(n).min(64));
            for _ in 0..n {
                v.push(r.record()?);
            }
            Body::Records(v)
        }
        _ => return Err(WireError::Malformed),
    };
    if !r.b.is_empty() {
        return Err(WireError::Malformed);
    }
    Ok(Message { node, seq, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn conn(i: u16) -> ConnRecord {
        ConnRecord {
            service: ServiceIdent {
                vip: "10.100.0.12".parse().unwrap(),
                protocol: Protocol::Tcp,
                port: Some(80),
            },
            client: "11.1.2.3".parse().unwrap(),
            client_port: 1000 + i,
            vip_port: 80,
            server: ServerIdent {
                addr: "10.0.0.11".parse().unwrap(),
                port: None,
            },
            local: i
                .is_multiple_of(2)
                .then(|| ("fd00::201".parse().unwrap(), 40_000 + i)),
            seq_shift: i.is_multiple_of(3).then_some(0xdead_0000 | u32::from(i)),
        }
    }

    #[test]
    fn messages_round_trip_and_altered_ones_are_refused() {
        let key = b"0123456789abcdef";
        let m = Message {
            node: 3,
            seq: 77,
            body: Body::Records(vec![
                FlowEvent::Opened(conn(1)),
                FlowEvent::Closed(conn(2)),
                FlowEvent::Sticky(StickyRecord {
                    service: conn(0).service,
                    key: ClientKey {
                        addr: "172.16.0.0".parse().unwrap(),
                        prefix: 16,
                    },
                    server: conn(0).server,
                }),
            ]),
        };
        let d = encode(&m, key);
        assert_eq!(decode(&d, key), Ok(m.clone()));
        assert_eq!(decode(&d, b"another key of 16"), Err(WireError::BadMac));
        for i in 4..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 1;
            assert_eq!(decode(&bad, key), Err(WireError::BadMac), "byte {i}");
        }
        assert_eq!(decode(&d[..10], key), Err(WireError::NotOurs));
        let hb = Message {
            node: 1,
            seq: 1,
            body: Body::Heartbeat(NodeState::Draining),
        };
        assert_eq!(decode(&encode(&hb, key), key), Ok(hb));
    }

    proptest! {
        #[test]
        fn random_datagrams_never_panic(d in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&d, b"0123456789abcdef");
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&d);
            let _ = decode(&framed, b"0123456789abcdef");
        }
    }
}
