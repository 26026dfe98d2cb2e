//! A family-independent view of the two connection tables: tuples of
//! either family, handles typed by family ([`ConnRef`]), and each table
//! operation written once for both families ([`Family`]).

use std::net::IpAddr;

use super::{Pipeline, Scratch};
use crate::conn::{
    Closed, Conn, ConnTable, FlowKey, Handle, InsertError, Key4, Key6, NewConn, TcpFlags,
};
use crate::frame::Frame;
use crate::time::Time;

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

    /// The tuple a classified packet was sent on (its addresses, ports and
    /// protocol as they are).
    #[inline]
    pub(crate) fn sent(c: &crate::wire::Classified) -> Tuple {
        Tuple {
            src: c.src_addr,
            dst: c.dst_addr,
            sport: c.src_port,
            dport: c.dst_port,
            proto: c.protocol.0,
        }
    }

    /// The tuple of key `k`.
    #[inline]
    fn of<K: FlowKey>(k: &K) -> Tuple {
        Tuple {
            src: k.src_addr(),
            dst: k.dst_addr(),
            sport: k.src_port(),
            dport: k.dst_port(),
            proto: k.proto(),
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

/// An address family's key, with the pipeline's table and scratch space for
/// it: what lets each table operation below be written once.
pub(crate) trait Family: FlowKey {
    /// The key of tuple `t`, if `t` is of this family.
    fn key(t: &Tuple) -> Option<Self>;
    /// The pipeline's table of this family.
    fn table<F: Frame>(p: &Pipeline<F>) -> &ConnTable<Self>;
    /// The pipeline's table of this family, to change.
    fn table_mut<F: Frame>(p: &mut Pipeline<F>) -> &mut ConnTable<Self>;
    /// The burst scratch space for this family's closed connections.
    fn closed(s: &mut Scratch) -> &mut Vec<Closed<Self>>;
    /// `h`, a handle of this family's table.
    fn conn_ref(h: Handle) -> ConnRef;
}

impl Family for Key4 {
    #[inline(always)]
    fn key(t: &Tuple) -> Option<Key4> {
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some(Key4::new(s, d, t.sport, t.dport, t.proto)),
            _ => None,
        }
    }
    #[inline(always)]
    fn table<F: Frame>(p: &Pipeline<F>) -> &ConnTable<Key4> {
        &p.conn4
    }
    #[inline(always)]
    fn table_mut<F: Frame>(p: &mut Pipeline<F>) -> &mut ConnTable<Key4> {
        &mut p.conn4
    }
    #[inline(always)]
    fn closed(s: &mut Scratch) -> &mut Vec<Closed<Key4>> {
        &mut s.closed4
    }
    #[inline(always)]
    fn conn_ref(h: Handle) -> ConnRef {
        ConnRef::V4(h)
    }
}

impl Family for Key6 {
    #[inline(always)]
    fn key(t: &Tuple) -> Option<Key6> {
        match (t.src, t.dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => Some(Key6::new(s, d, t.sport, t.dport, t.proto)),
            _ => None,
        }
    }
    #[inline(always)]
    fn table<F: Frame>(p: &Pipeline<F>) -> &ConnTable<Key6> {
        &p.conn6
    }
    #[inline(always)]
    fn table_mut<F: Frame>(p: &mut Pipeline<F>) -> &mut ConnTable<Key6> {
        &mut p.conn6
    }
    #[inline(always)]
    fn closed(s: &mut Scratch) -> &mut Vec<Closed<Key6>> {
        &mut s.closed6
    }
    #[inline(always)]
    fn conn_ref(h: Handle) -> ConnRef {
        ConnRef::V6(h)
    }
}

/// Runs `$body` with `K` the family of tuple `$t` (`$none` for a tuple of
/// mixed families).
macro_rules! by_family {
    ($t:expr, $none:expr, |$k:ident: K| $body:expr) => {
        match $t.src {
            IpAddr::V4(_) => match Key4::key($t) {
                Some($k) => $body,
                None => $none,
            },
            IpAddr::V6(_) => match Key6::key($t) {
                Some($k) => $body,
                None => $none,
            },
        }
    };
}

impl<F: Frame> Pipeline<F> {
    /// The connection `h` names, with its forward (client-side) tuple.
    #[inline]
    pub(crate) fn conn_get(&self, h: &ConnRef) -> Option<(Tuple, Conn)> {
        match h {
            ConnRef::V4(h) => self.get_in::<Key4>(h),
            ConnRef::V6(h) => self.get_in::<Key6>(h),
        }
    }

    #[inline(always)]
    fn get_in<K: Family>(&self, h: &Handle) -> Option<(Tuple, Conn)> {
        K::table(self)
            .get_with_key(h)
            .map(|(k, c)| (Tuple::of(k), *c))
    }

    /// Accounts a packet on `h`: TCP state and expiry.
    #[inline]
    pub(crate) fn conn_on_packet(&mut self, h: &ConnRef, flags: u8) {
        let (f, now) = (TcpFlags(flags), self.now);
        match h {
            ConnRef::V4(h) => Key4::table_mut(self).on_packet(h, f, now),
            ConnRef::V6(h) => Key6::table_mut(self).on_packet(h, f, now),
        };
    }

    /// Prefetches the bucket where `t` would be looked up or inserted, and
    /// returns `t`'s hash in the table of its family (for
    /// [`Pipeline::conn_insert`]).
    #[inline]
    pub(crate) fn conn_prefetch(&self, t: &Tuple) -> u64 {
        by_family!(t, 0, |k: K| Family::table(self).prefetch(&k))
    }

    /// Looks a tuple up.
    pub(crate) fn conn_lookup(&mut self, t: &Tuple) -> Option<ConnRef> {
        by_family!(t, None, |k: K| self.lookup_in(k))
    }

    fn lookup_in<K: Family>(&mut self, k: K) -> Option<ConnRef> {
        K::table_mut(self).lookup(&k).map(K::conn_ref)
    }

    /// Removes the connection `h` names and releases what it held.
    pub(crate) fn conn_close(&mut self, h: &ConnRef) {
        match h {
            ConnRef::V4(h) => self.close_in::<Key4>(h),
            ConnRef::V6(h) => self.close_in::<Key6>(h),
        }
    }

    fn close_in<K: Family>(&mut self, h: &Handle) {
        if let Some(c) = K::table_mut(self).remove(h) {
            self.conn_gone(&c.key, &c.conn, false);
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
        by_family!(fwd, Err(InsertError::ReplyIsForward), |k: K| self
            .insert_in(k, reply, new, f, guessed))
    }

    #[inline(always)]
    fn insert_in<K: Family>(
        &mut self,
        k: K,
        reply: Option<(&Tuple, u64)>,
        new: NewConn,
        f: TcpFlags,
        guessed: bool,
    ) -> Result<(), InsertError> {
        let r = match reply {
            Some((r, rh)) => Some((K::key(r).ok_or(InsertError::ReplyIsForward)?, rh)),
            None => None,
        };
        let now = self.now;
        let t = K::table_mut(self);
        let h = t.hash_key(&k);
        let ins = t.insert_hashed_guess(k, h, r, new, f, now, guessed)?;
        for c in ins.evicted.iter().flatten() {
            self.conn_gone(&c.key, &c.conn, false);
        }
        Ok(())
    }

    /// Expires up to `budget` due connections of family `K`, releasing what
    /// they held.
    pub(super) fn expire_in<K: Family>(&mut self, now: Time, budget: usize) {
        let mut closed = core::mem::take(K::closed(&mut self.scratch));
        closed.clear();
        K::table_mut(self).expire(now, budget, &mut closed);
        for c in closed.drain(..) {
            self.note_unanswered(&c.conn);
            self.conn_gone(&c.key, &c.conn, false);
        }
        *K::closed(&mut self.scratch) = closed;
    }

    /// Empties the table of family `K` (a flush, `reload`: a reload's
    /// `map`), releasing what its connections held.
    pub(super) fn drain_in<K: Family>(&mut self, map: Option<&crate::model::ReloadMap>) {
        let mut closed = Vec::new();
        let t = K::table_mut(self);
        match map {
            Some(m) => t.apply_reload(m, &mut closed),
            None => t.flush(&mut closed),
        };
        for c in &closed {
            self.conn_gone(&c.key, &c.conn, map.is_some());
        }
    }
}

/// Whether `t`'s tuple is free in the table of its family (for the SNAT
/// port choice); a tuple of mixed families is never free.
pub(crate) fn tuple_free(
    conn4: &crate::conn::ConnTable4,
    conn6: &crate::conn::ConnTable6,
    t: &Tuple,
) -> bool {
    match t.src {
        IpAddr::V4(_) => Key4::key(t).is_some_and(|k| !conn4.contains(&k, conn4.hash_key(&k))),
        IpAddr::V6(_) => Key6::key(t).is_some_and(|k| !conn6.contains(&k, conn6.hash_key(&k))),
    }
}
