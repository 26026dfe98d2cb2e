//! SYN cookies (RFC 4987 §3.6): the appliance answers a SYN with a SYN-ACK
//! whose initial sequence number carries what the handshake needs, so that
//! a SYN leaves no state behind and a flood of them cannot fill a table. The
//! client's ACK (acknowledging `cookie + 1`) brings the cookie back; only a
//! holder of the secret can make one that validates.
//!
//! # Layout of a cookie (32 bits)
//! ```text
//!  31      26 25  24 23                                 0
//! +----------+------+------------------------------------+
//! |  minute  | mss  |  MAC (SipHash-2-4, 24 bits)        |
//! +----------+------+------------------------------------+
//! ```
//! * `minute`: the minute counter (time since the clock's zero, in
//!   [`PERIOD`]s) modulo 64 when the cookie was made; a cookie is valid for
//!   [`MAX_AGE`] periods after it (RFC 4987: "a few minutes" at most).
//! * `mss`: the index in [`MSS_TABLE`] of the largest MSS not above the
//!   client's (no window scaling, SACK or timestamps are kept: RFC 4987
//!   §3.6, the cost of keeping no state).
//! * MAC: SipHash-2-4 of the flow (addresses, ports), the client's initial
//!   sequence number, the minute and the MSS index, keyed by a secret that
//!   changes every period: the secret of a period is derived from the master
//!   key and the period's number, so rotation needs no shared clock beyond
//!   the minute and every worker (and every cluster node with the same
//!   master key) makes and accepts the same cookies.
//!
//! A cookie made for one flow never validates for another, for another
//! initial sequence number, or once its minute is too old; a forged one
//! validates with probability 2^-24 per try.

use core::time::Duration;
use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;
use siphasher::sip128::{Hasher128, SipHasher24 as SipHasher128};

use crate::time::Time;

/// How often the secret changes, and the unit of a cookie's age.
pub const PERIOD: Duration = Duration::from_secs(60);
/// Periods after the one it was made in that a cookie is still accepted.
pub const MAX_AGE: u32 = 2;
/// The MSS values a cookie can carry (bytes), smallest first: the defaults
/// of RFC 9293 (536) and the common IPv6 tunnel, PPPoE and Ethernet values.
pub const MSS_TABLE: [u16; 4] = [536, 1220, 1440, 1460];

const MINUTE_BITS: u32 = 6;
const MSS_SHIFT: u32 = 24;
const MINUTE_SHIFT: u32 = 26;
const MAC_MASK: u32 = (1 << MSS_SHIFT) - 1;

/// The connection a cookie is for, as the client's packets carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CookieFlow {
    /// Client address.
    pub client: IpAddr,
    /// The address the client connected to.
    pub server: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// Port the client connected to.
    pub server_port: u16,
}

/// What a valid cookie gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    /// The appliance's initial sequence number (the cookie itself).
    pub isn: u32,
    /// The MSS to send with (at most the client's).
    pub mss: u16,
}

/// A SYN cookie maker and checker (see the module documentation).
#[derive(Clone)]
pub struct SynCookies {
    master: [u8; 16],
    /// The secrets of the last periods used: (period, secret), derived once
    /// per period rather than per cookie.
    secrets: [(u64, (u64, u64)); 2],
}

impl core::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the key.
        f.debug_struct("SynCookies").finish_non_exhaustive()
    }
}

impl SynCookies {
    /// Cookies keyed by `master` (16 random bytes, the same on every
    /// worker, and on every node of a cluster that shares its flows).
    pub fn new(master: [u8; 16]) -> SynCookies {
        let mut c = SynCookies {
            master,
            secrets: [(u64::MAX, (0, 0)); 2],
        };
        c.secrets[0] = (0, c.derive(0));
        c
    }

    /// The secret of `period`, derived from the master key.
    fn derive(&self, period: u64) -> (u64, u64) {
        let mut k = SipHasher128::new_with_key(&self.master);
        k.write_u64(period);
        let s = k.finish128();
        (s.h1, s.h2)
    }

    /// The secret of `period`, from the cache or derived (and cached).
    #[inline]
    fn secret(&mut self, period: u64) -> (u64, u64) {
        if let Some(&(_, s)) = self.secrets.iter().find(|(p, _)| *p == period) {
            return s;
        }
        let s = self.derive(period);
        // Replace an empty slot, else the older period's.
        let [(a, _), (b, _)] = self.secrets;
        let slot = if b == u64::MAX || (a != u64::MAX && b < a) {
            1
        } else {
            0
        };
        self.secrets[slot] = (period, s);
        s
    }

    /// The period (minute) number of `now`.
    fn period(now: Time) -> u64 {
        now.as_nanos() / PERIOD.as_nanos() as u64
    }

    /// The MAC of a cookie made in period `period` with MSS index `mss`.
    fn mac(&mut self, period: u64, flow: &CookieFlow, client_isn: u32, mss: u32) -> u32 {
        // The period's secret: the master key hashed with the period.
        let (k0, k1) = self.secret(period);
        let mut h = SipHasher24::new_with_keys(k0, k1);
        for a in [flow.client, flow.server] {
            match a {
                IpAddr::V4(a) => h.write(&a.octets()),
                IpAddr::V6(a) => h.write(&a.octets()),
            }
        }
        h.write_u16(flow.client_port);
        h.write_u16(flow.server_port);
        h.write_u32(client_isn);
        h.write_u32(mss);
        (h.finish() as u32) & MAC_MASK
    }

    /// The cookie for a SYN of `flow` with initial sequence number
    /// `client_isn` and MSS option `client_mss` (`None`: the RFC 9293
    /// default, 536), made at `now`.
    pub fn make(
        &mut self,
        now: Time,
        flow: &CookieFlow,
        client_isn: u32,
        client_mss: Option<u16>,
    ) -> Cookie {
        let want = client_mss.unwrap_or(MSS_TABLE[0]);
        let idx = MSS_TABLE.iter().rposition(|&m| m <= want).unwrap_or(0);
        let period = Self::period(now);
        let minute = (period % (1 << MINUTE_BITS)) as u32;
        let mac = self.mac(period, flow, client_isn, idx as u32);
        Cookie {
            isn: minute << MINUTE_SHIFT | (idx as u32) << MSS_SHIFT | mac,
            mss: MSS_TABLE[idx],
        }
    }

    /// Checks `cookie` (the client's acknowledgement number minus one) for
    /// an ACK of `flow` whose sequence number minus one is `client_isn`, at
    /// `now`: the cookie as made, or `None` if it was not made for this
    /// handshake by a holder of the key within [`MAX_AGE`] periods.
    pub fn check(
        &mut self,
        now: Time,
        flow: &CookieFlow,
        client_isn: u32,
        cookie: u32,
    ) -> Option<Cookie> {
        let minute = u64::from(cookie >> MINUTE_SHIFT);
        let idx = (cookie >> MSS_SHIFT) & 3;
        let current = Self::period(now);
        let modulus = 1u64 << MINUTE_BITS;
        let age = (current % modulus + modulus - minute) % modulus;
        if age > u64::from(MAX_AGE) || age > current {
            return None;
        }
        let period = current - age;
        (self.mac(period, flow, client_isn, idx) == cookie & MAC_MASK).then(|| Cookie {
            isn: cookie,
            mss: MSS_TABLE[idx as usize],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn flow(v6: bool, a: u32, b: u32, cp: u16, sp: u16) -> CookieFlow {
        let ip = |x: u32| {
            if v6 {
                IpAddr::V6(Ipv6Addr::from(u128::from(x) | 0x2001_0db8 << 96))
            } else {
                IpAddr::V4(Ipv4Addr::from(x))
            }
        };
        CookieFlow {
            client: ip(a),
            server: ip(b),
            client_port: cp,
            server_port: sp,
        }
    }

    const KEY: [u8; 16] = *b"0123456789abcdef";

    #[test]
    fn mss_is_the_largest_not_above_the_clients() {
        let mut c = SynCookies::new(KEY);
        let f = flow(false, 1, 2, 3, 4);
        let now = Time::from_secs(1000);
        for (client, want) in [
            (None, 536),
            (Some(100), 536),
            (Some(536), 536),
            (Some(1300), 1220),
            (Some(1452), 1440),
            (Some(1460), 1460),
            (Some(9000), 1460),
        ] {
            let k = c.make(now, &f, 7, client);
            assert_eq!(k.mss, want, "{client:?}");
            assert_eq!(c.check(now, &f, 7, k.isn), Some(k));
        }
    }

    #[test]
    fn cookies_expire_and_survive_the_minute_counter_wrapping() {
        let mut c = SynCookies::new(KEY);
        let f = flow(true, 1, 2, 3, 4);
        // Made just before minute 64 (the counter wraps to 0).
        let made = Time::from_secs(63 * 60 + 59);
        let k = c.make(made, &f, 99, Some(1460));
        for (later, ok) in [
            (0, true),
            (1, true),
            (61, true),
            (121, false),
            (3600, false),
        ] {
            let now = Time::from_secs(63 * 60 + 59 + later);
            assert_eq!(c.check(now, &f, 99, k.isn).is_some(), ok, "+{later} s");
        }
    }

    proptest! {
        #[test]
        fn round_trip_and_nothing_else_validates(
            v6 in any::<bool>(),
            a in any::<u32>(), b in any::<u32>(), cp in any::<u16>(), sp in any::<u16>(),
            isn in any::<u32>(), mss in proptest::option::of(any::<u16>()),
            secs in 0u64..10_000_000, after in 0u64..120,
            bit in 0u32..32,
        ) {
            let mut c = SynCookies::new(KEY);
            let f = flow(v6, a, b, cp, sp);
            let now = Time::from_secs(secs);
            let k = c.make(now, &f, isn, mss);
            let later = Time::from_secs(secs + after);
            prop_assert_eq!(c.check(later, &f, isn, k.isn), Some(k));
            // Another handshake, another key or a changed cookie: refused.
            prop_assert_eq!(c.check(later, &f, isn.wrapping_add(1), k.isn), None);
            let g = CookieFlow { client_port: cp.wrapping_add(1), ..f };
            prop_assert_eq!(c.check(later, &g, isn, k.isn), None);
            prop_assert_eq!(SynCookies::new(*b"fedcba9876543210").check(later, &f, isn, k.isn), None);
            if bit < MSS_SHIFT {
                prop_assert_eq!(c.check(later, &f, isn, k.isn ^ (1 << bit)), None);
            }
        }
    }
}
