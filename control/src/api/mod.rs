//! The management API: HTTP/JSON, served by the management thread on the
//! local Unix socket (for `tackctl`; file permissions guard it) and, when
//! the profile's `management.http` asks, on a TCP address (a bearer token
//! guards it anywhere but loopback).
//!
//! * [`types`]: the JSON documents (and their OpenAPI schemas);
//! * [`op`]: the typed operations handed to the control thread;
//! * [`http`]: the routes and the OpenAPI document;
//! * [`serve`]: the management thread, its listeners and their bounds;
//! * [`client`]: `tackctl`'s side of the socket;
//! * [`counters`]: what the management thread refused or cut.
//!
//! The control thread never waits for a client: the management thread
//! reads and checks a request whole (bounded in bytes and time), hands the
//! control thread a typed [`op::Op`] through a bounded channel, and waits
//! for the answer on its own runtime.

pub mod client;
pub mod counters;
pub mod http;
pub mod op;
pub mod serve;
pub mod types;
