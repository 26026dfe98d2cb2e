//! The Tack appliance: profiles, runtime, control thread.
