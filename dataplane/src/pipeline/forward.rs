//! Forwarding: NAT, full NAT, DSR and tunnel.

use super::{Output, Pipeline};
use crate::conn::Handle;
use crate::frame::{Frame, FrameAlloc};
use crate::wire::Classified;

impl<F: Frame> Pipeline<F> {
    /// A frame of a known connection.
    pub(super) fn established<A: FrameAlloc<Frame = F>>(
        &mut self,
        _frame: F,
        _c: &Classified,
        _h: Handle,
        _rx_port: u16,
        _out: &mut Output<F>,
        _alloc: &mut A,
    ) {
        self.counters.drop_not_for_us += 1;
    }

    /// A TCP/UDP frame to a VIP without a connection.
    pub(super) fn new_flow<A: FrameAlloc<Frame = F>>(
        &mut self,
        _frame: F,
        _c: &Classified,
        _rx_port: u16,
        _out: &mut Output<F>,
        _alloc: &mut A,
    ) {
        self.counters.drop_no_service += 1;
    }
}
