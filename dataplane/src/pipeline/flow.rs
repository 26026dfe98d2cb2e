//! A family-independent view of the two connection tables.

use std::net::IpAddr;

use super::Pipeline;
use crate::conn::{Conn, Handle, InsertError, Key4, Key6, NewConn, TcpFlags};
use crate::frame::Frame;

/// A 5-tuple of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tuple {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) proto: u8,
}

impl Tuple {
    /// `h`, a handle of this tuple's table, typed by its family.
    #[inline]
    pub(crate) fn conn_ref(&self, h: Handle) -> ConnRef {
        match self.src {
            IpAddr::V4(_) => ConnRef::V4(h),
            IpAddr::V6(_) => ConnRef::V6(h),
        }
    }

    fn key4(&self) -> Option<Key4> {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                Some(Key4::new(s, d, self.sport, self.dport, self.proto))
            }
            _ => None,
        }
    }

    fn key6(&self) -> Option<Key6> {
        match (self.src, self.dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                Some(Key6::new(s, d, self.sport, self.dport, self.proto))
            }
            _ => None,
        }
    }

    fn from4(k: &Key4) -> Tuple {
        Tuple {
            src: IpAddr::V4(k.src),
            dst: IpAddr::V4(k.dst),
            sport: k.src_port,
            dport: k.dst_port,
            proto: k.proto,
        }
    }

    fn from6(k: &Key6) -> Tuple {
        Tuple {
            src: IpAddr::V6(k.src),
            dst: IpAddr::V6(k.dst),
            sport: k.src_port,
            dport: k.dst_port,
            proto: k.proto,
        }
    }
}

/// A connection of one of the two tables: its handle, typed by the
/// table's address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnRef {
    /// In the IPv4 table.
    V4(Handle),
    /// In the IPv6 table.
    V6(Handle),
}

impl ConnRef {
    /// Whether the packet that found it is a server's (a reply entry).
    #[inline]
    pub(crate) fn is_reply(&self) -> bool {
        match self {
            ConnRef::V4(h) | ConnRef::V6(h) => h.is_reply(),
        }
    }
}

impl<F: Frame> Pipeline<F> {
    /// The connection `h` names, with its forward (client-side) tuple.
    #[inline]
    pub(crate) fn conn_get(&self, h: &ConnRef) -> Option<(Tuple, Conn)> {
        match h {
            ConnRef::V4(h) => self
                .conn4
                .get_with_key(h)
                .map(|(k, c)| (Tuple::from4(k), *c)),
            ConnRef::V6(h) => self
                .conn6
                .get_with_key(h)
                .map(|(k, c)| (Tuple::from6(k), *c)),
        }
    }

    /// Accounts a packet on `h`: TCP state and expiry.
    #[inline]
    pub(crate) fn conn_on_packet(&mut self, h: &ConnRef, flags: u8) {
        let f = TcpFlags(flags);
        match h {
            ConnRef::V4(h) => self.conn4.on_packet(h, f, self.now),
            ConnRef::V6(h) => self.conn6.on_packet(h, f, self.now),
        };
    }

    /// Prefetches the bucket where `t` would be looked up or inserted, and
    /// returns `t`'s hash in the table of its family (for
    /// [`Pipeline::conn_insert`]).
    #[inline]
    pub(crate) fn conn_prefetch(&self, t: &Tuple) -> u64 {
        match (t.key4(), t.key6()) {
            (Some(k), _) => self.conn4.prefetch(&k),
            (_, Some(k)) => self.conn6.prefetch(&k),
            _ => 0,
        }
    }

    /// Looks a tuple up.
    pub(crate) fn conn_lookup(&mut self, t: &Tuple) -> Option<ConnRef> {
        match (t.key4(), t.key6()) {
            (Some(k), _) => self.conn4.lookup(&k).map(ConnRef::V4),
            (_, Some(k)) => self.conn6.lookup(&k).map(ConnRef::V6),
            _ => None,
        }
    }

    /// Removes the connection `h` names and releases what it held.
    pub(crate) fn conn_close(&mut self, h: &ConnRef) {
        match h {
            ConnRef::V4(h) => {
                if let Some(c) = self.conn4.remove(h) {
                    self.conn_gone(&c.key, &c.conn, false);
                }
            }
            ConnRef::V6(h) => {
                if let Some(c) = self.conn6.remove(h) {
                    self.conn_gone(&c.key, &c.conn, false);
                }
            }
        }
    }

    /// Creates a connection from forward tuple `fwd` and, for NAT and full
    /// NAT, reply tuple `reply` with its hash ([`Pipeline::conn_prefetch`]);
    /// `guessed`: the reply tuple is an unchecked guess, and its being taken
    /// ([`InsertError::ReplyExists`]) is no conflict
    /// ([`ConnTable::insert_hashed_guess`](crate::conn::ConnTable::insert_hashed_guess)).
    /// Connections evicted to make room for it are closed (and what they
    /// held released) before this returns.
    pub(crate) fn conn_insert(
        &mut self,
        fwd: &Tuple,
        reply: Option<(&Tuple, u64)>,
        new: NewConn,
        flags: u8,
        guessed: bool,
    ) -> Result<(), InsertError> {
        let f = TcpFlags(flags);
        match (fwd.key4(), fwd.key6()) {
            (Some(k), _) => {
                let r = match reply {
                    Some((r, rh)) => Some((r.key4().ok_or(InsertError::ReplyIsForward)?, rh)),
                    None => None,
                };
                let h = self.conn4.hash_key(&k);
                let ins = self
                    .conn4
                    .insert_hashed_guess(k, h, r, new, f, self.now, guessed)?;
                for c in ins.evicted.iter().flatten() {
                    self.conn_gone(&c.key, &c.conn, false);
                }
                Ok(())
            }
            (_, Some(k)) => {
                let r = match reply {
                    Some((r, rh)) => Some((r.key6().ok_or(InsertError::ReplyIsForward)?, rh)),
                    None => None,
                };
                let h = self.conn6.hash_key(&k);
                let ins = self
                    .conn6
                    .insert_hashed_guess(k, h, r, new, f, self.now, guessed)?;
                for c in ins.evicted.iter().flatten() {
                    self.conn_gone(&c.key, &c.conn, false);
                }
                Ok(())
            }
            _ => Err(InsertError::ReplyIsForward),
        }
    }
}

/// Whether `t`'s tuple is free in the table of its family (for the SNAT
/// port choice).
pub(crate) fn tuple_free(
    conn4: &crate::conn::ConnTable4,
    conn6: &crate::conn::ConnTable6,
    t: &Tuple,
) -> bool {
    let h = match (t.key4(), t.key6()) {
        (Some(k), _) => conn4.hash_key(&k),
        (_, Some(k)) => conn6.hash_key(&k),
        _ => return false,
    };
    !tuple_taken(conn4, conn6, t, h)
}

/// Whether an entry of the table of `t`'s family has `t` (of hash `hash`)
/// as its key; a tuple of mixed families is taken (it can never be used).
fn tuple_taken(
    conn4: &crate::conn::ConnTable4,
    conn6: &crate::conn::ConnTable6,
    t: &Tuple,
    hash: u64,
) -> bool {
    match (t.key4(), t.key6()) {
        (Some(k), _) => conn4.contains(&k, hash),
        (_, Some(k)) => conn6.contains(&k, hash),
        _ => true,
    }
}
