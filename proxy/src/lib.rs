//! `tack-proxy`: Tack's L7 load-balancing server.
#![forbid(unsafe_code)]
