//! Output: frames to send per port and to the host, and the steps that put them there.

use super::*;

/// Frames to send after a burst or poll: `tx[port]` on each port, and
/// `host[port]` to the kernel (exception path) as received on each port, so
/// that the runtime can hand each to that port's host interface. The runtime
/// reuses one `Output` (its vectors keep their capacity).
#[derive(Debug)]
pub struct Output<F> {
    /// Per port, frames to transmit.
    pub tx: Vec<Vec<F>>,
    /// Per port, frames for the host that arrived on that port.
    pub host: Vec<Vec<F>>,
}

impl<F> Output<F> {
    /// An empty output for `n_ports` ports.
    pub fn new(n_ports: usize) -> Self {
        Output {
            tx: (0..n_ports).map(|_| Vec::new()).collect(),
            host: (0..n_ports).map(|_| Vec::new()).collect(),
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.host.iter().all(Vec::is_empty) && self.tx.iter().all(Vec::is_empty)
    }

    /// Number of frames to send (all ports and the host).
    pub fn len(&self) -> usize {
        self.host
            .iter()
            .chain(&self.tx)
            .map(Vec::len)
            .sum::<usize>()
    }

    /// Empties every queue (dropping the frames).
    pub fn clear(&mut self) {
        for t in self.tx.iter_mut().chain(&mut self.host) {
            t.clear();
        }
    }
}

impl<F: Frame> Pipeline<F> {
    /// Sends `frame` on `port` as is (its Ethernet header already addressed).
    #[inline]
    pub(crate) fn emit(&self, frame: F, port: u16, out: &mut Output<F>, local: bool) -> Fate {
        match out.tx.get_mut(usize::from(port)) {
            Some(q) => {
                q.push(frame);
                if local {
                    Fate::Answered
                } else {
                    Fate::Forwarded
                }
            }
            None => Fate::Dropped(DropReason::BadPort),
        }
    }

    /// Sends `frame` to next hop `nh` on `port` through the neighbour table.
    #[inline]
    pub(crate) fn send_to_next_hop<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        port: u16,
        nh: IpAddr,
        out: &mut Output<F>,
        alloc: &mut A,
        local: bool,
    ) -> Fate {
        self.send_via(frame, (port, nh), None, out, alloc, local)
    }

    /// Sends `frame` to server `server` of service `svc` (next hop `nh` on
    /// `port`), through the neighbour entry cached for that server.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn send_to_server<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        port: u16,
        nh: IpAddr,
        svc: ServiceIdx,
        server: ServerIdx,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        self.send_via(frame, (port, nh), Some((svc, server)), out, alloc, false)
    }

    /// Sends `frame` to next hop `nh` on `port` through the neighbour table,
    /// with the neighbour entry cached for `server` if given.
    #[inline(always)]
    fn send_via<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        (port, nh): (u16, IpAddr),
        server: Option<(ServiceIdx, ServerIdx)>,
        out: &mut Output<F>,
        alloc: &mut A,
        local: bool,
    ) -> Fate {
        let hint = server.and_then(|(svc, server)| {
            self.svcs
                .get_mut(usize::from(svc))
                .and_then(|s| s.servers.get_mut(usize::from(server)))
                .map(|s| &mut s.nh_hint)
        });
        let r = self.neigh.transmit(
            frame,
            port,
            nh,
            self.now,
            &self.ports,
            out,
            alloc,
            &mut self.counters,
            hint,
        );
        tx_fate(r, local)
    }
}

/// The fate of a frame given to the neighbour table.
#[inline]
fn tx_fate(r: neigh::TxResult, local: bool) -> Fate {
    match r {
        neigh::TxResult::Sent if local => Fate::Answered,
        neigh::TxResult::Sent => Fate::Forwarded,
        neigh::TxResult::Held => Fate::Held,
        neigh::TxResult::Dropped(why) => Fate::Dropped(why),
    }
}
