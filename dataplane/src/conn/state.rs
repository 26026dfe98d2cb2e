//! TCP flags, the connection state machine and its per-state timeouts.

use super::*;

/// TCP header flags as they appear in the header's flags byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No flag (also what UDP packets pass).
    pub const NONE: TcpFlags = TcpFlags(0);
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// SYN + ACK.
    pub const SYN_ACK: TcpFlags = TcpFlags(0x12);
    /// FIN + ACK.
    pub const FIN_ACK: TcpFlags = TcpFlags(0x11);

    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Which way a packet travels on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → VIP.
    Original,
    /// Server → client (or → local address in full NAT).
    Reply,
}

/// Connection state as the appliance sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ConnState {
    /// The client's SYN was seen, no answer yet.
    SynSent = 0,
    /// The server's SYN-ACK was seen.
    SynRecv = 1,
    /// Handshake complete (or the flow was picked up mid-stream).
    Established = 2,
    /// The client sent FIN first.
    FinWait = 3,
    /// The server sent FIN first.
    CloseWait = 4,
    /// Both sides sent FIN; waiting for the last ACK.
    LastAck = 5,
    /// Closed by FINs; lingering for late packets.
    TimeWait = 6,
    /// Reset; lingering briefly for late packets.
    Close = 7,
    /// UDP (or any non-TCP protocol): a single state.
    Udp = 8,
}

pub(super) const STATES: usize = 9;

impl ConnState {
    /// The state of a new connection created by a client packet.
    pub const fn initial(proto: u8, flags: TcpFlags) -> ConnState {
        if proto != 6 {
            ConnState::Udp
        } else if flags.contains(TcpFlags::RST) {
            ConnState::Close
        } else if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
            ConnState::SynSent
        } else {
            ConnState::Established
        }
    }

    /// The next TCP state after a packet with `flags` travelling in `dir`.
    /// `input_only` is true when the appliance never sees replies (DSR,
    /// tunnel): then the client's ACK completes the handshake.
    pub const fn next(self, dir: Direction, flags: TcpFlags, input_only: bool) -> ConnState {
        use ConnState::*;
        if matches!(self, Udp) {
            return Udp;
        }
        if flags.contains(TcpFlags::RST) {
            return Close;
        }
        let syn = flags.contains(TcpFlags::SYN);
        let ack = flags.contains(TcpFlags::ACK);
        let fin = flags.contains(TcpFlags::FIN);
        match dir {
            Direction::Original => {
                if syn && !ack {
                    // A new attempt reuses a closed tuple; a retransmission changes nothing.
                    return match self {
                        SynSent | Close | TimeWait => SynSent,
                        s => s,
                    };
                }
                if fin {
                    return match self {
                        SynSent | SynRecv | Established => FinWait,
                        CloseWait => LastAck,
                        s => s,
                    };
                }
                if ack {
                    return match self {
                        SynRecv => Established,
                        SynSent if input_only => Established,
                        LastAck => TimeWait,
                        s => s,
                    };
                }
                self
            }
            Direction::Reply => {
                if syn {
                    return match self {
                        SynSent if ack => SynRecv,
                        s => s,
                    };
                }
                if fin {
                    return match self {
                        SynRecv | Established => CloseWait,
                        FinWait => LastAck,
                        s => s,
                    };
                }
                if ack {
                    return match self {
                        LastAck => TimeWait,
                        s => s,
                    };
                }
                self
            }
        }
    }

    pub(super) const fn from_u8(v: u8) -> ConnState {
        match v {
            0 => ConnState::SynSent,
            1 => ConnState::SynRecv,
            2 => ConnState::Established,
            3 => ConnState::FinWait,
            4 => ConnState::CloseWait,
            5 => ConnState::LastAck,
            6 => ConnState::TimeWait,
            7 => ConnState::Close,
            _ => ConnState::Udp,
        }
    }
}

/// Idle timeout per state. Defaults follow IPVS, with a 60 s SYN timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Client SYN seen (default 60 s).
    pub syn_sent: Duration,
    /// Server SYN-ACK seen (default 60 s).
    pub syn_recv: Duration,
    /// Established (default 900 s).
    pub established: Duration,
    /// Client FIN first (default 120 s).
    pub fin_wait: Duration,
    /// Server FIN first (default 60 s).
    pub close_wait: Duration,
    /// Both FINs (default 30 s).
    pub last_ack: Duration,
    /// Closed by FINs (default 120 s).
    pub time_wait: Duration,
    /// Reset (default 10 s).
    pub close: Duration,
    /// UDP and other protocols (default 300 s).
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            syn_sent: Duration::from_secs(60),
            syn_recv: Duration::from_secs(60),
            established: Duration::from_secs(900),
            fin_wait: Duration::from_secs(120),
            close_wait: Duration::from_secs(60),
            last_ack: Duration::from_secs(30),
            time_wait: Duration::from_secs(120),
            close: Duration::from_secs(10),
            udp: Duration::from_secs(300),
        }
    }
}

impl Timeouts {
    /// The timeout of `state`.
    pub const fn get(&self, state: ConnState) -> Duration {
        match state {
            ConnState::SynSent => self.syn_sent,
            ConnState::SynRecv => self.syn_recv,
            ConnState::Established => self.established,
            ConnState::FinWait => self.fin_wait,
            ConnState::CloseWait => self.close_wait,
            ConnState::LastAck => self.last_ack,
            ConnState::TimeWait => self.time_wait,
            ConnState::Close => self.close,
            ConnState::Udp => self.udp,
        }
    }

    pub(super) fn as_nanos(&self) -> [u64; STATES] {
        let mut out = [0u64; STATES];
        for (i, o) in out.iter_mut().enumerate() {
            let d = self.get(ConnState::from_u8(i as u8));
            *o = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        }
        out
    }
}
