//! What lookups and changes of the table return: probes, handles, closed and inserted connections.

use super::*;

/// What [`ConnTable::probe`] found for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// No such key.
    Miss,
    /// The key of a connection's forward (client-side) entry.
    Hit(Handle),
    /// The key of a reply entry: pass it to [`ConnTable::finish`] for its
    /// connection, or (IPv4) read it with [`ConnTable::steady_reply`].
    Reply(ReplyRef),
}

/// A reply entry found by a probe (see [`Probe::Reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyRef {
    /// The forward entry's hash (IPv6; 0 where replies are self-contained,
    /// which compute it from the stashed key when needed).
    pub(super) hash: u64,
    /// The reply entry's bucket.
    pub(super) bucket: u32,
    pub(super) id: u32,
    pub(super) generation: u8,
}

/// A steady reply's connection, from its reply entry alone
/// ([`ConnTable::steady_reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SteadyReply<K> {
    /// Where the reply entry lies, for [`ConnTable::on_reply_at`].
    pub(crate) at: Located,
    /// The connection's forward (client-side) key.
    pub(crate) key: K,
    /// Service index.
    pub(crate) service: ServiceIdx,
    /// Server index.
    pub(crate) server: ServerIdx,
    /// Whether the connection is full NAT (the reply goes to the client,
    /// not to the local address).
    pub(crate) full_nat: bool,
    /// The connection's [`Conn::user_flags`].
    pub(crate) user_flags: u8,
}

/// Where a connection lies in its table ([`ConnTable::get_located`]): valid
/// until the table next changes (an insert, a removal, an expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Located(pub(super) usize);

/// Refers to a connection found by a lookup or created by an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    pub(super) hash: u64,
    pub(super) bucket: u32,
    pub(super) id: u32,
    pub(super) generation: u8,
    pub(super) reply: bool,
}

impl Handle {
    /// Whether the packet matched the reply entry (it travels server → client).
    #[inline]
    pub fn is_reply(&self) -> bool {
        self.reply
    }
    /// The packet's direction.
    #[inline]
    pub fn direction(&self) -> Direction {
        if self.reply {
            Direction::Reply
        } else {
            Direction::Original
        }
    }
    /// The connection's id in its table.
    #[inline]
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// New connection parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConn {
    /// Service index.
    pub service: ServiceIdx,
    /// Server index.
    pub server: ServerIdx,
    /// Full-NAT local address index and port.
    pub local: Option<(u16, u16)>,
    /// Initial pipeline flags.
    pub user_flags: u8,
}

/// Why a connection left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Its timeout passed.
    Expired,
    /// Removed to make room for a new flow.
    Evicted,
    /// Removed by [`ConnTable::remove`].
    Removed,
    /// Its service, server or local address disappeared in a reload (the
    /// connection carries the old snapshot's indices).
    Reload,
    /// Removed by [`ConnTable::flush`].
    Flushed,
}

/// A connection that left the table: the pipeline releases what it held
/// (full-NAT port, server connection count, sticky reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed<K> {
    /// Forward (client-side) key.
    pub key: K,
    /// The connection as it was.
    pub conn: Conn,
    /// Why it left.
    pub reason: CloseReason,
}

/// A successful insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted<K> {
    /// The new connection.
    pub handle: Handle,
    /// Its initial state.
    pub state: ConnState,
    /// Connections evicted to make room (at most two).
    pub evicted: [Option<Closed<K>>; 2],
}
