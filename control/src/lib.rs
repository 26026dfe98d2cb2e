//! The Tack appliance: YAML profiles, the lcore runtime on `tack-dpdk`, the
//! control thread, and the management tools.

pub mod clock;
pub mod ctl;
pub mod mgmt;
pub mod msg;
pub mod profile;
pub mod runtime;
pub mod worker;
pub mod yamlpos;
