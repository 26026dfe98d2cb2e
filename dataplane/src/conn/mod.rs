//! The per-core connection table: bounded, burst-oriented, with TCP state
//! tracking and timer-wheel expiry.
//!
//! # Layout
//! One [`ConnTable`] per address family and core ([`ConnTable4`],
//! [`ConnTable6`]), each a hashbrown [`HashTable`] of entries that hold the key
//! and the connection inline: 48 bytes for IPv4, 64 bytes for IPv6 (asserted at
//! compile time). Keys are the packet's own 5-tuple as it arrives, so a
//! lookup needs no classification first:
//! - the **forward** entry is keyed by the client-side tuple
//!   (client → VIP) and holds the [`Conn`];
//! - a **reply** entry (NAT and full NAT, where the appliance sees the server's
//!   answers) is keyed by the server-side tuple (server → client for NAT,
//!   server → local address for full NAT) and points to the forward entry.
//!
//! Lookups resolve both kinds to a [`Handle`] on the forward entry;
//! [`Handle::is_reply`] tells which direction the packet travels.
//!
//! # Self-contained replies (IPv4)
//! An IPv4 reply entry also holds everything a *steady* reply needs (an
//! established TCP connection's segment without SYN, FIN or RST, or a UDP
//! datagram): the rest of the forward key (client address and port, VIP
//! and port), a copy of the service, server and state, and its own expiry.
//! Such a reply reads one entry, as a client packet does, instead of two
//! ([`ConnTable::steady_reply`], [`ConnTable::on_reply_at`]). The table
//! keeps the copy true:
//! - every state change made on the forward entry is copied to the reply
//!   entry, whose own expiry is then cleared (the transition's expiry is
//!   the one that counts, so a shorter timeout applies at once);
//! - a reload remaps the copy's service and server with the forward entry's;
//! - the connection expires at the later of the forward entry's expiry and
//!   the reply entry's: the forward entry's timer consults the reply entry
//!   when it fires, and re-arms for the later one ([`ConnTable::expires`]).
//!
//! Any other reply (a SYN-ACK, a FIN, an RST, or one the fast path cannot
//! send) resolves to the forward entry as before. IPv6 entries have no room
//! for two more addresses within a cache line: IPv6 replies always take the
//! second lookup.
//!
//! Each connection has an id in `0..capacity` used by the timer wheel and by
//! reply entries, with an 8-bit generation: a [`Handle`] kept after its
//! connection left resolves to `None` rather than to the id's next occupant
//! (handles are meant to live for one burst; the generation guards 255
//! reuses); per-id metadata (the two entry hashes) lives in the id's
//! timer node (48 bytes together), all allocated at construction. The hash
//! table is allocated at construction for twice the configured entry
//! capacity: hashbrown then always cleans deleted slots in place instead of
//! growing, so the table **never allocates or grows after construction** and
//! never holds more than the configured number of entries. A full table drops
//! the new flow or evicts the connection closest to expiry, as configured
//! ([`FullPolicy`]); both are counted.
//!
//! # Memory
//! The table has `next_power_of_two(capacity × 16 / 7)` buckets, each the
//! entry plus one control byte, and 52 bytes per id (timer node with the
//! id's metadata, free-list slot). A capacity just under 7/16 of a power of two uses the allocation
//! best: 917 504 IPv4 entries take 2^21 buckets (98 MiB), 1 000 000 take 2^22
//! (196 MiB); 10 M IPv4 entries take 1.53 GiB plus 0.5 GiB of timers.
//! [`ConnTable::table_bytes`] reports the table's allocation.
//!
//! # Bursts
//! A lookup is split in three steps so that a burst's cache misses overlap:
//! [`ConnTable::prefetch`] hashes a key and prefetches its likeliest bucket,
//! the first of its probe sequence (`hash & (buckets - 1)`, hashbrown's
//! `h1`): its control byte and both ends of its entry (an entry is not
//! line-aligned and may span two lines), and the start of the next
//! bucket's entry, the second likeliest. The bucket addresses are computed
//! from where the bucket array lies (learnt at the first insert), so the
//! prefetch reads nothing and waits for nothing (hashbrown has no prefetch
//! of its own; the `prefetch-index` crate issues the instruction, and this
//! crate stays free of `unsafe`). [`ConnTable::probe`], as late as
//! possible, takes a key found in one of those two buckets as a hit and
//! probes the others in full (absent keys, or keys further along their probe
//! sequence); an IPv6 reply entry's forward entry is prefetched there and
//! read by [`ConnTable::finish`] (an IPv4 reply entry is enough for a
//! steady reply; its forward entry is found only if needed). At the load
//! this table keeps (at most half full, usually far less) about nine keys
//! in ten sit in their likeliest bucket,
//! so a hit costs the lines the prefetch brought in. The pipeline prefetches
//! every frame's key as it classifies the burst and probes each four frames
//! before it handles it; [`ConnTable::lookup_burst`] runs the three steps
//! over a whole burst for other callers. A [`Handle`] remembers the bucket,
//! so later accesses do not probe again (they re-probe only if an insert in
//! between moved entries).

//! # TCP state and timeouts
//! The table follows each TCP connection through the states of
//! [`ConnState`], from the client's SYN and the server's SYN-ACK to the FIN
//! exchange or an RST; each state has its own idle timeout ([`Timeouts`],
//! IPVS-like defaults). Services whose replies bypass the appliance (DSR,
//! tunnel) are tracked on client packets only ("input-only", as IPVS does). An
//! established flow's packets only move its expiry forward; the wheel timer
//! is not touched (lazy re-arming: when the old timer fires the entry is
//! found not due and re-armed). A transition to a state with a shorter timeout
//! re-arms at once, so no connection outlives its timeout by more than a tick.

use core::fmt;
use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashTable;
use thiserror::Error;

use crate::hash::bytes_hash;
use crate::model::{ReloadMap, ServerIdx, ServiceIdx};
use crate::time::Time;
use crate::timer::{TimerError, TimerWheel, id_stack};

/// Largest burst hashed in one pass of [`ConnTable::lookup_burst`].
pub const BURST: usize = 32;
/// Largest number of connections (ids) in one table.
pub const MAX_CONNS: usize = (u32::MAX - 1) as usize;
/// Marker for "no local address" (non-full-NAT connections).
const NO_LOCAL: u16 = u16::MAX;

mod change;
mod config;
mod entry;
mod handle;
mod key;
mod state;
mod table;
#[cfg(test)]
mod tests;

pub use config::*;
pub use entry::*;
pub use handle::*;
pub use key::*;
pub use state::*;
pub use table::*;
