//! The service model: virtual services, real-server pools, persistence rules
//! and the immutable [`Config`] snapshot the worker cores share.
//!
//! The plain types ([`Service`], [`RealServer`], [`Persistence`],
//! [`LocalPool`], …) say what an operator asked for; the profile's schema
//! (YAML, field names, defaults) is `tack-control`'s, which builds them. [`Config::new`] validates a list of services and
//! compiles it into a snapshot: per service the eligible-server list, the
//! source-hash weight table and (for Maglev) the lookup table are precomputed
//! once, on the control thread, and shared read-only by every core through an
//! `Arc<Config>`. Services are themselves behind `Arc`, so a server state or
//! weight change ([`Config::with_server_state`], [`Config::with_server_weight`])
//! rebuilds only the service concerned.
//!
//! Indices ([`ServiceIdx`], [`ServerIdx`]) are positions in one snapshot.
//! Identities are stable across snapshots: a service is identified by
//! (VIP, protocol, port), a server within its service by (address, port), a
//! local address by its address. [`Config::reload_map`] turns two snapshots
//! into an old-index → new-index map so per-core tables (connections, sticky
//! bindings, scheduler state) survive a reload.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hashbrown::HashMap;
use thiserror::Error;

use crate::addr::mask_v4;
use crate::balance::Backend;
use crate::balance::maglev::{self, Maglev, MaglevError};
use crate::balance::rr::{self, SmoothWrr};
use crate::hash;
use crate::redirect::ServerUrls;

pub use crate::ids::{ServerIdx, ServiceIdx};

/// Largest number of services in one snapshot (`u16::MAX` is reserved as "none").
pub const MAX_SERVICES: usize = u16::MAX as usize;
/// Largest number of real servers in one pool (`u16::MAX` is reserved as "none").
pub const MAX_SERVERS: usize = u16::MAX as usize;
/// Largest number of local addresses in one full-NAT pool.
pub const MAX_LOCAL_ADDRS: usize = u16::MAX as usize;
/// Longest accepted persistence timeout (one year, in minutes).
pub const MAX_PERSISTENCE_MINUTES: u32 = 525_600;
/// Default Maglev table size.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = maglev::DEFAULT_TABLE_SIZE;

mod error;
mod reload;
mod service;
mod snapshot;
#[cfg(test)]
mod tests;

pub use crate::addr::{NaturalClass, natural_class};
pub use error::*;
pub use reload::*;
pub use service::*;
pub use snapshot::*;
