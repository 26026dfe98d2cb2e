//! ICMP errors: translation for NAT'd flows.

use super::{AddrInfo, Output, Pipeline};
use crate::frame::{Frame, FrameAlloc};
use crate::wire::Classified;

impl<F: Frame> Pipeline<F> {
    /// An ICMP or ICMPv6 error.
    pub(super) fn icmp_error<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        _c: &Classified,
        rx_port: u16,
        info: Option<AddrInfo>,
        out: &mut Output<F>,
        _alloc: &mut A,
    ) {
        match info {
            Some(i) if i.port == Some(rx_port) => self.give_host(frame, out),
            _ => self.counters.drop_icmp_error_no_conn += 1,
        }
    }
}
