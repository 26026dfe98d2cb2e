//! The SYN proxy ([`Verdict::SynProxy`]) of TCP NAT and full-NAT services
//! with `syn_proxy` (as DPVS `synproxy`, netfilter `SYNPROXY`): the
//! appliance completes the client's handshake itself with a SYN cookie
//! ([`crate::syncookie`], as the redirect responder does), and makes a
//! connection only for a client that brings a valid cookie back; a flood of
//! spoofed SYNs leaves nothing in the connection table.
//!
//! 1. Client SYN, no connection: answered with a SYN-ACK whose sequence
//!    number is the cookie (MSS only: no window scaling, SACK or timestamps
//!    are negotiated, so none travel on the connection).
//! 2. Client ACK, no connection: its cookie is checked; a valid one turns
//!    the ACK into the client's SYN (its initial sequence number, the
//!    cookie's MSS), which opens the connection as any SYN does
//!    ([`Pipeline::open_flow`]: server choice, full-NAT address, the SYN
//!    sent to the server). The cookie is kept with the connection. Data the
//!    ACK carried is not sent (the client sends it again).
//! 3. Server SYN-ACK: the shift between the two sequence spaces (the
//!    cookie minus the server's initial sequence number) is kept with the
//!    connection, and the SYN-ACK is answered in place with the ACK that
//!    completes the server's handshake; the client never sees it.
//! 4. Every later segment is shifted ([`wire::rewrite_tcp_seq`]): the
//!    server's sequence numbers up by the shift, the client's
//!    acknowledgements and SACK edges down by it, then forwarded as any
//!    connection's segment. Client segments that arrive before step 3 are
//!    dropped (counted; the client sends them again).
//!
//! The shift lives with the connection, by its id, in [`SeqShifts`] (the
//! table's entries have no room left for it); the connection's
//! [`ConnFlags::syn_proxy`] says it has one, and keeps the connection off
//! the cached plans, which do not shift. In a cluster the connection's
//! record leaves at step 3, with the shift ([`ConnRecord::seq_shift`]):
//! before it, the connection could not be carried on anywhere else.

use super::flow::Tuple;
use super::respond::{Segment, cookie_flow, tcp_of};
use super::xmit::ConnFlags;
use super::*;
use crate::conn::{Conn, ConnState};
use crate::wire::{SeqShift, TcpFlags};

/// Per connection of either table, by its id: the cookie (before the
/// server answered) or the shift from the server's sequence space to the
/// client's (after).
#[derive(Debug, Default)]
pub(crate) struct SeqShifts {
    v4: Vec<u32>,
    v6: Vec<u32>,
}

impl SeqShifts {
    /// What is kept for connection `id` of the IPv4 (`v4`) or IPv6 table.
    pub(crate) fn get(&self, v4: bool, id: u32) -> Option<u32> {
        let v = if v4 { &self.v4 } else { &self.v6 };
        v.get(id as usize).copied()
    }

    /// The slot of connection `h` (in a table of `capacity` entries),
    /// allocated for the whole table at first use.
    fn slot(&mut self, h: &ConnRef, capacity: usize) -> Option<&mut u32> {
        let (v, id) = match h {
            ConnRef::V4(h) => (&mut self.v4, h.id()),
            ConnRef::V6(h) => (&mut self.v6, h.id()),
        };
        if v.len() < capacity {
            v.resize(capacity, 0);
        }
        v.get_mut(id as usize)
    }
}

impl<F: Frame> Pipeline<F> {
    /// The slot of connection `h` in [`SeqShifts`].
    pub(super) fn shift_slot(&mut self, h: &ConnRef) -> Option<&mut u32> {
        let cap = match h {
            ConnRef::V4(_) => self.conn4.capacity(),
            ConnRef::V6(_) => self.conn6.capacity(),
        };
        self.seq_shifts.slot(h, cap)
    }

    /// A TCP segment without a connection to SYN-proxied service `svc`
    /// (steps 1 and 2 of the module documentation).
    pub(super) fn syn_proxy<A: FrameAlloc<Frame = F>>(
        &mut self,
        mut frame: F,
        c: &Classified,
        svc: ServiceIdx,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        let Some(t) = tcp_of(&frame, c) else {
            return Fate::Dropped(DropReason::SynProxyIgnored);
        };
        if t.flags.is_syn_only() {
            self.counters.synproxy_syn_cookies += 1;
            return self.answer_syn(frame, c, (t.seq, t.mss), rx_port, out);
        }
        let ack_only = t.flags.contains(TcpFlags::ACK)
            && !t.flags.contains(TcpFlags::SYN)
            && !t.flags.contains(TcpFlags::RST)
            && !t.flags.contains(TcpFlags::FIN);
        if !ack_only {
            return Fate::Dropped(DropReason::SynProxyIgnored);
        }
        let client_isn = t.seq.wrapping_sub(1);
        let Some(k) =
            self.cookies
                .check(self.now, &cookie_flow(c), client_isn, t.ack.wrapping_sub(1))
        else {
            return Fate::Dropped(DropReason::SynProxyBadCookie);
        };
        // The client's SYN, as it was (but for the options the cookie does
        // not keep), from this ACK.
        let syn = Segment {
            seq: client_isn,
            ack: 0,
            flags: TcpFlags::SYN,
            mss: Some(k.mss),
            payload: 0,
        };
        if let Err(fate) = self.write_segment(&mut frame, c, &syn, false) {
            return fate;
        }
        let Ok(c2) = wire::classify_with(frame.bytes(), self.classify_opts) else {
            return Fate::Dropped(DropReason::Rewrite);
        };
        let created = self.counters.conn_created;
        let fate = self.open_flow(frame, &c2, svc, Protocol::Tcp, rx_port, out, alloc);
        if self.counters.conn_created == created {
            // Not opened (no server, a full table), or opened already by
            // an earlier segment of this burst: nothing to keep.
            return fate;
        }
        let orig = Tuple::sent(c);
        // The connection made (its SYN sent, or waiting for the server's
        // neighbour): it keeps the cookie until the server answers.
        if let Some(h) = self.conn_lookup(&orig)
            && self
                .conn_get(&h)
                .is_some_and(|(_, conn)| ConnFlags::of(&conn).syn_proxy)
        {
            if let Some(slot) = self.shift_slot(&h) {
                *slot = k.isn;
            }
            self.counters.synproxy_opened += 1;
        }
        fate
    }

    /// A segment of SYN-proxied connection `h` (`conn`): shifted for
    /// forwarding, or answered (the server's SYN-ACK) or dropped (a client
    /// segment before the server answered) here (steps 3 and 4 of the
    /// module documentation).
    pub(super) fn splice(
        &mut self,
        mut frame: F,
        c: &Classified,
        h: &ConnRef,
        conn: &Conn,
        rx_port: u16,
        out: &mut Output<F>,
    ) -> Result<F, Fate> {
        let Some(t) = tcp_of(&frame, c) else {
            return Err(Fate::Dropped(DropReason::Rewrite));
        };
        let Some(kept) = self.shift_slot(h).map(|s| *s) else {
            return Err(Fate::Dropped(DropReason::Rewrite));
        };
        let waiting = conn.state() == ConnState::SynSent;
        let shift = match (h.is_reply(), waiting) {
            (true, true) if t.flags.contains(TcpFlags::SYN | TcpFlags::ACK) => {
                // The server's SYN-ACK: keep the shift, complete the
                // server's handshake in its place.
                let shift = kept.wrapping_sub(t.seq);
                if let Some(slot) = self.shift_slot(h) {
                    *slot = shift;
                }
                self.conn_on_packet(h, t.flags.0);
                self.counters.synproxy_joined += 1;
                // Now the connection can be carried on elsewhere: its
                // record (held back when it opened) leaves with the shift.
                if self.flow_events
                    && let Some((orig, conn)) = self.conn_get(h)
                {
                    let local = self.local_of(&conn);
                    self.flow_event(
                        true,
                        (conn.service(), conn.server()),
                        (orig.src, orig.sport),
                        orig.dport,
                        local,
                        Some(shift),
                    );
                }
                let s = Segment {
                    seq: t.ack,
                    ack: t.seq.wrapping_add(1),
                    flags: TcpFlags::ACK,
                    mss: None,
                    payload: 0,
                };
                return Err(self.send_segment(frame, c, rx_port, out, &s));
            }
            (true, true) if t.flags.contains(TcpFlags::RST) => {
                // The server refused: the client's reset, in the sequence
                // space it knows (just past the cookie).
                SeqShift {
                    seq: kept.wrapping_add(1).wrapping_sub(t.seq),
                    ack: 0,
                }
            }
            (true, true) => return Err(Fate::Dropped(DropReason::SynProxyPending)),
            (false, true) if t.flags.contains(TcpFlags::RST) => SeqShift::default(),
            (false, true) => return Err(Fate::Dropped(DropReason::SynProxyPending)),
            (true, false) => SeqShift { seq: kept, ack: 0 },
            (false, false) => SeqShift {
                seq: 0,
                ack: kept.wrapping_neg(),
            },
        };
        match wire::rewrite_tcp_seq(frame.bytes_mut(), c, shift) {
            Ok(()) => Ok(frame),
            Err(_) => Err(Fate::Dropped(DropReason::Rewrite)),
        }
    }
}
