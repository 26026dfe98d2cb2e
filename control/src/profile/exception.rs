//! The `exception:` section: the exception path to the kernel, a TAP
//! interface per port carrying the port's MAC and addresses (see
//! [`crate::exception`]).

use serde::Deserialize;

use super::{FieldError, PortSection, Profile};

/// Longest Linux interface name (`IFNAMSIZ` − 1).
pub const IFNAME_MAX: usize = 15;

/// The exception path to the kernel.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExceptionSection {
    /// Give each port a kernel TAP interface with the port's MAC and
    /// addresses; traffic for the ports' own addresses that the pipeline
    /// does not answer goes there, and what the kernel sends there goes out
    /// of the port. Off: that traffic is dropped (`drop_host_disabled`).
    pub enabled: bool,
    /// Per worker, packets per second of host traffic other than control
    /// traffic (ARP, NDP, ICMP, BFD, BGP, VRRP, which always pass).
    pub rate: u32,
    /// Per worker, the largest burst of that traffic.
    pub burst: u32,
    /// Install the profile's routes on the TAP interfaces (metric
    /// [`ROUTE_METRIC`], so a management interface's own routes win), so
    /// that kernel programs reach the networks behind the routers.
    pub routes: bool,
}

/// The metric of the routes installed on the TAP interfaces.
pub const ROUTE_METRIC: u32 = 1000;

impl Default for ExceptionSection {
    fn default() -> Self {
        ExceptionSection {
            enabled: false,
            rate: 10_000,
            burst: 1_000,
            routes: true,
        }
    }
}

impl PortSection {
    /// The name of the port's kernel interface: `tap`, or `tack-` and the
    /// port's name, cut to [`IFNAME_MAX`] characters.
    pub fn tap_name(&self) -> String {
        match &self.tap {
            Some(t) => t.clone(),
            None => format!("tack-{}", self.name)
                .chars()
                .take(IFNAME_MAX)
                .collect(),
        }
    }
}

impl Profile {
    /// Checks the exception section and the TAP interface names.
    pub(super) fn validate_exception(&self) -> Result<(), FieldError> {
        let e = &self.exception;
        if e.burst == 0 && e.rate > 0 {
            return Err(FieldError::new(
                "exception.burst",
                "must be at least 1 when the rate is not 0",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let name = p.tap_name();
            let field = format!("ports[{i}].tap");
            if name.is_empty()
                || name.len() > IFNAME_MAX
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(FieldError::new(
                    field,
                    format!(
                        "`{name}` is not an interface name (1 to {IFNAME_MAX} letters, digits, -, _ and .)"
                    ),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(FieldError::new(
                    field,
                    format!("interface `{name}` is used by two ports"),
                ));
            }
        }
        Ok(())
    }
}
