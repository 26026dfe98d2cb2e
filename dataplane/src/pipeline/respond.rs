//! The redirect responder (seed 000, [`Verdict::Respond`]): TCP to a
//! redirect service is answered in place and never forwarded, without any
//! per-connection state.
//!
//! * A SYN is answered with a SYN-ACK whose sequence number is a SYN cookie
//!   ([`crate::syncookie`]): MSS only, no window scaling, SACK or
//!   timestamps.
//! * The first data segment, whose acknowledgement carries the cookie back,
//!   is answered with the redirect ([`crate::redirect::answer`]) to the
//!   chosen server's URL, with ACK, PSH and FIN: the transaction's one
//!   answer, which closes the connection. The server is chosen by weighted
//!   rendezvous hashing of the connection (client address and port, VIP
//!   port) over the service's eligible servers, so a retransmitted request
//!   gets the identical answer.
//! * Everything else (a bare ACK, a FIN, an RST, a segment whose cookie does
//!   not validate) is dropped and counted: the responder never answers what
//!   it cannot check, so it reflects nothing but SYN-ACKs of the size of
//!   the SYNs.
//!
//! The same in-place segment answers, for services that ask for it, a TCP
//! segment of a connection no worker knows with a reset.

use super::*;
use crate::balance::hrw;
use crate::hash;
use crate::redirect::{self, Answer};
use crate::syncookie::CookieFlow;
use crate::wire::{Ipv4Repr, Ipv6Repr, TcpFlags, TcpPacket, TcpRepr};

/// What the responder (and the SYN proxy) reads of a received TCP segment.
pub(super) struct Tcp {
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) flags: TcpFlags,
    pub(super) window: u16,
    pub(super) mss: Option<u16>,
    /// Where its payload is in the frame.
    pub(super) data: core::ops::Range<usize>,
}

/// The TCP header of `frame` (classified as `c`), if it has a valid one.
pub(super) fn tcp_of<F: Frame>(frame: &F, c: &Classified) -> Option<Tcp> {
    let seg = frame.bytes().get(c.l4_offset..c.l3_end)?;
    let t = TcpPacket::new_checked(seg).ok()?;
    Some(Tcp {
        seq: t.seq_number(),
        ack: t.ack_number(),
        flags: t.flags(),
        window: t.window_len(),
        mss: t.mss().ok().flatten(),
        data: c.l4_offset + t.header_len()..c.l3_end,
    })
}

/// The handshake a SYN cookie is made for: the client's segment's flow.
pub(super) fn cookie_flow(c: &Classified) -> CookieFlow {
    CookieFlow {
        client: c.src_addr,
        server: c.dst_addr,
        client_port: c.src_port,
        server_port: c.dst_port,
    }
}

/// The receive window the responder advertises.
const WINDOW: u16 = 65_535;

/// What the responder sends: sequence numbers, flags, MSS option, payload
/// (in the pipeline's response buffer).
pub(super) struct Segment {
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) flags: TcpFlags,
    pub(super) mss: Option<u16>,
    pub(super) payload: usize,
}

impl<F: Frame> Pipeline<F> {
    /// Answers a TCP segment to redirect service `svc` (see the module
    /// documentation).
    pub(super) fn respond_redirect(
        &mut self,
        frame: F,
        c: &Classified,
        svc: ServiceIdx,
        rx_port: u16,
        out: &mut Output<F>,
    ) -> Fate {
        let Some(Tcp {
            seq,
            ack,
            flags,
            window,
            mss,
            data,
        }) = tcp_of(&frame, c)
        else {
            return Fate::Dropped(DropReason::RedirectIgnored);
        };
        let flow = cookie_flow(c);
        if flags.is_syn_only() {
            self.counters.redirect_syn_cookies += 1;
            return self.answer_syn(frame, c, (seq, mss), rx_port, out);
        }
        let plain = flags.contains(TcpFlags::ACK)
            && !flags.contains(TcpFlags::SYN)
            && !flags.contains(TcpFlags::RST);
        if !plain || data.is_empty() {
            return Fate::Dropped(DropReason::RedirectIgnored);
        }
        let cookie = ack.wrapping_sub(1);
        let Some(k) = self
            .cookies
            .check(self.now, &flow, seq.wrapping_sub(1), cookie)
        else {
            return Fate::Dropped(DropReason::RedirectBadCookie);
        };
        let services = Arc::clone(&self.services);
        let Some(entry) = services.entry(svc) else {
            return Fate::Dropped(DropReason::NoService);
        };
        let key = hash::flow_hash(entry.seed(), c.src_addr, c.src_port, c.dst_port);
        let Some(server) = hrw::pick(entry.eligible(), key) else {
            if let Some(sc) = self.svc_ctr.get_mut(usize::from(svc)) {
                sc.no_server += 1;
            }
            return Fate::Dropped(DropReason::NoServer);
        };
        let (Some(urls), Some(how)) = (
            entry.server(server).and_then(|s| s.urls.as_ref()),
            entry.spec().redirect.as_ref(),
        ) else {
            return Fate::Dropped(DropReason::NoServer);
        };
        let max = if window == 0 {
            usize::from(k.mss)
        } else {
            usize::from(k.mss.min(window))
        };
        let mut buf = core::mem::take(&mut self.respond_buf);
        buf.resize(usize::from(MSS_MAX), 0);
        let answer = frame
            .bytes()
            .get(data.clone())
            .map(|req| redirect::answer(req, urls, &how.secure_prefixes, &mut buf, max));
        let fate = match answer {
            Some(Ok(a)) => {
                match a {
                    Answer::Found { .. } => {
                        self.counters.redirect_found += 1;
                        self.count_conn(svc, server);
                    }
                    Answer::BadRequest { .. } => self.counters.redirect_bad_request += 1,
                    Answer::TooLong { .. } => self.counters.redirect_too_long += 1,
                }
                let s = Segment {
                    seq: cookie.wrapping_add(1),
                    ack: seq.wrapping_add(data.len() as u32),
                    flags: TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN,
                    mss: None,
                    payload: a.len(),
                };
                self.respond_buf = buf;
                return self.send_segment(frame, c, rx_port, out, &s);
            }
            _ => Fate::Dropped(DropReason::NoRoom),
        };
        self.respond_buf = buf;
        fate
    }

    /// Answers a client's SYN (its initial sequence number and MSS option,
    /// `syn`) with a SYN-ACK whose sequence number is a SYN cookie: no state
    /// is kept (the redirect responder and the SYN proxy).
    pub(super) fn answer_syn(
        &mut self,
        frame: F,
        c: &Classified,
        syn: (u32, Option<u16>),
        rx_port: u16,
        out: &mut Output<F>,
    ) -> Fate {
        let (isn, mss) = syn;
        let k = self.cookies.make(self.now, &cookie_flow(c), isn, mss);
        let s = Segment {
            seq: k.isn,
            ack: isn.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            mss: Some(k.mss),
            payload: 0,
        };
        self.send_segment(frame, c, rx_port, out, &s)
    }

    /// Answers a TCP segment of a connection no worker knows with a reset
    /// (RFC 9293 §3.10.7.1: `<SEQ=SEG.ACK><CTL=RST>` if it acknowledges
    /// something, else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`), for
    /// services that ask for it ([`crate::model::Service::reset_unknown`]).
    pub(super) fn reset_unknown(
        &mut self,
        frame: F,
        c: &Classified,
        rx_port: u16,
        out: &mut Output<F>,
    ) -> Fate {
        let Some(Tcp {
            seq,
            ack,
            flags,
            data,
            ..
        }) = tcp_of(&frame, c)
        else {
            return Fate::Dropped(DropReason::TcpNoConn);
        };
        let len = data.len();
        let s = if flags.contains(TcpFlags::ACK) {
            Segment {
                seq: ack,
                ack: 0,
                flags: TcpFlags::RST,
                mss: None,
                payload: 0,
            }
        } else {
            let fin = u32::from(flags.contains(TcpFlags::FIN));
            Segment {
                seq: 0,
                ack: seq.wrapping_add(len as u32).wrapping_add(fin),
                flags: TcpFlags::RST | TcpFlags::ACK,
                mss: None,
                payload: 0,
            }
        };
        self.counters.tcp_resets_sent += 1;
        self.send_segment(frame, c, rx_port, out, &s)
    }

    /// Turns `frame` into segment `s` back to its sender (addresses and
    /// ports swapped, the payload from the response buffer) and sends it
    /// on `rx_port`.
    pub(super) fn send_segment(
        &mut self,
        mut frame: F,
        c: &Classified,
        rx_port: u16,
        out: &mut Output<F>,
        s: &Segment,
    ) -> Fate {
        let Some(port_mac) = self.ports.get(usize::from(rx_port)).map(|p| p.mac) else {
            return Fate::Dropped(DropReason::BadPort);
        };
        if let Err(fate) = self.write_segment(&mut frame, c, s, true) {
            return fate;
        }
        super::local::back_to_sender(frame.bytes_mut(), port_mac);
        self.emit(frame, rx_port, out, true)
    }

    /// Writes segment `s` over the IP packet of `frame` (classified as `c`):
    /// back to its sender (`reverse`: addresses and ports swapped) or on its
    /// way (as it came), the payload from the response buffer.
    pub(super) fn write_segment(
        &mut self,
        frame: &mut F,
        c: &Classified,
        s: &Segment,
        reverse: bool,
    ) -> Result<(), Fate> {
        let ident = self.next_ident();
        let ((src, sport), (dst, dport)) = if reverse {
            ((c.dst_addr, c.dst_port), (c.src_addr, c.src_port))
        } else {
            ((c.src_addr, c.src_port), (c.dst_addr, c.dst_port))
        };
        let tcp = TcpRepr {
            src_port: sport,
            dst_port: dport,
            seq_number: s.seq,
            ack_number: s.ack,
            flags: s.flags,
            window_len: WINDOW,
            urgent_at: 0,
            mss: s.mss,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            payload: self.respond_buf.get(..s.payload).unwrap_or(&[]),
        };
        let l3 = c.l3_offset;
        let ip_len = if c.src_addr.is_ipv4() { 20 } else { 40 };
        let tcp_len = tcp.header_len() + s.payload;
        if !frame.set_len(l3 + ip_len + tcp_len) {
            return Err(Fate::Dropped(DropReason::NoRoom));
        }
        let ttl = self.cfg.ttl;
        let b = frame.bytes_mut();
        let ip = match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                protocol: IpProtocol::TCP,
                payload_len: tcp_len,
                ttl,
                tos: 0,
                ident,
                dont_frag: true,
            }
            .emit(&mut b[l3..]),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Ipv6Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: IpProtocol::TCP,
                payload_len: tcp_len,
                hop_limit: ttl,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut b[l3..]),
            _ => Err(wire::Error::InvalidArgument),
        };
        let ok = ip.is_ok() && tcp.emit(&mut b[l3 + ip_len..], &src, &dst).is_ok();
        if !ok {
            return Err(Fate::Dropped(DropReason::NoRoom));
        }
        Ok(())
    }
}

/// The response buffer's size: the largest segment payload answered.
const MSS_MAX: u16 = 1460;
