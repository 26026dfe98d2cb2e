//! Source persistence ("sticky"): a per-core table of (service, client key) →
//! server bindings with LocalDirector timer semantics.
//!
//! # Client keys
//! A client key is the source address masked per the service's
//! [`ClientKeyRule`]: the whole address, an IPv4 netmask / IPv6 prefix, or the
//! address's **natural class** (class A → /8, class B → /16, class C → /24;
//! Tenereillo, "persistent connections based on subnet natural class"), which
//! keeps clients behind an array of NAT firewalls on one server even when each
//! connection leaves through a different address of the same classful
//! network. Class D and E sources have no natural network: they are never
//! sticky and are scheduled like non-persistent traffic (counted in
//! [`StickyStats::unsticky`]). With `networks` listed (LocalDirector's
//! `nc-subnet`), natural-class keys apply only inside those networks and other
//! sources are keyed by their whole address.
//!
//! # Timer
//! The timeout (minutes) is an *idle* timeout: each binding counts the
//! connections currently using it; while any is open the binding never
//! expires, and when the last one ends ([`StickyTable::release`]) the timer
//! restarts. Expiry runs on a per-table [`TimerWheel`] with lazy re-arming.
//!
//! # Agreement across cores
//! Every core has its own table. The **first choice for a key is a
//! deterministic function of the key and the live weighted servers**: weighted
//! rendezvous hashing over the service's eligible servers (`Up`, weight > 0),
//! seeded by the service's identity. Two cores that see the same key at the
//! same time with the same snapshot therefore choose the same server without
//! talking. This choice **ignores load**: least-connection schedulers are not
//! consulted for sticky keys (their counts are per core and would make cores
//! disagree); a persistent service is balanced by weight only. Each new
//! binding (and each rebinding) is pushed as a [`StickyEvent`] into a bounded
//! outbox that the pipeline drains to the control thread, which publishes
//! bindings to the other cores ([`StickyTable::install`]). An installed
//! binding replaces the local one unless it points at a server that is `Down`
//! or in `Maint`. The control thread must serialise conflicting reports (two
//! cores learning different servers for one key, possible only when they
//! held different snapshots): it keeps the first binding per key and
//! publishes it to all cores, including the one that reported the other.
//! Connections already open keep their server in any case (connection
//! persistence).
//!
//! Expiry is per core: a key idle on this core expires here even if another
//! core still has connections for it; its next connection here makes the same
//! deterministic choice again, which differs only if the server set changed
//! meanwhile (and is then reconciled through the events).
//!
//! # Server states
//! A binding to a `Drain` server stays (drain keeps sticky clients). A binding
//! to a `Down` or `Maint` server is rebound on its key's next connection: to
//! the server's backup if one is configured and `Up` (a weight-0 `Up` server
//! is a valid hot-standby backup), otherwise to a deterministic rendezvous
//! choice over the live servers; the rebinding is reported.

use core::fmt;
use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashTable;
use thiserror::Error;

use crate::addr::{mask_v4, mask_v6};
use crate::balance::hrw;
use crate::hash;
use crate::model::{
    ClientKeyRule, Config, ReloadMap, ServerIdx, ServerState, ServiceEntry, ServiceIdx, ServiceMap,
    natural_class,
};
use crate::time::Time;
use crate::timer::{TimerError, TimerWheel, id_stack};

const NO_SERVER: ServerIdx = ServerIdx(u16::MAX);

/// A masked client address: the persistence key within a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey {
    /// The masked address.
    pub addr: IpAddr,
    /// The prefix length it was masked to.
    pub prefix: u8,
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The client key of source `src` under `rule`, or `None` when the source is
/// never sticky (class D/E under natural class, or a family the rule cannot
/// mask).
pub fn client_key(rule: &ClientKeyRule, src: IpAddr) -> Option<ClientKey> {
    match (rule, src) {
        (ClientKeyRule::Address, IpAddr::V4(a)) => Some(ClientKey {
            addr: IpAddr::V4(a),
            prefix: 32,
        }),
        (ClientKeyRule::Address, IpAddr::V6(a)) => Some(ClientKey {
            addr: IpAddr::V6(a),
            prefix: 128,
        }),
        (ClientKeyRule::Prefix(p), IpAddr::V4(a)) if *p <= 32 => Some(ClientKey {
            addr: IpAddr::V4(mask_v4(a, *p)),
            prefix: *p,
        }),
        (ClientKeyRule::Prefix(p), IpAddr::V6(a)) if *p <= 128 => Some(ClientKey {
            addr: IpAddr::V6(mask_v6(a, *p)),
            prefix: *p,
        }),
        (ClientKeyRule::Prefix(_), _) => None,
        (ClientKeyRule::NaturalClass { networks }, IpAddr::V4(a)) => {
            let p = natural_class(a).prefix()?;
            let net = mask_v4(a, p);
            if networks.is_empty() || networks.contains(&net) {
                Some(ClientKey {
                    addr: IpAddr::V4(net),
                    prefix: p,
                })
            } else {
                Some(ClientKey {
                    addr: IpAddr::V4(a),
                    prefix: 32,
                })
            }
        }
        (ClientKeyRule::NaturalClass { .. }, IpAddr::V6(_)) => None,
    }
}

const _: () = assert!(core::mem::size_of::<SEntry>() <= 48);

mod table;
mod types;

pub use table::*;
pub use types::*;
#[cfg(test)]
mod tests;
