//! Output: frames to send per port and to the host, and the steps that put them there.

use super::*;

/// Frames to send after a burst or poll: `tx[port]` on each port, `host` to
/// the kernel (exception path). The runtime reuses one `Output` (its vectors
/// keep their capacity).
#[derive(Debug)]
pub struct Output<F> {
    /// Per port, frames to transmit.
    pub tx: Vec<Vec<F>>,
    /// Frames for the host.
    pub host: Vec<F>,
}

impl<F> Output<F> {
    /// An empty output for `n_ports` ports.
    pub fn new(n_ports: usize) -> Self {
        Output {
            tx: (0..n_ports).map(|_| Vec::new()).collect(),
            host: Vec::new(),
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.host.is_empty() && self.tx.iter().all(Vec::is_empty)
    }

    /// Number of frames to send (all ports and the host).
    pub fn len(&self) -> usize {
        self.host.len() + self.tx.iter().map(Vec::len).sum::<usize>()
    }

    /// Empties every queue (dropping the frames).
    pub fn clear(&mut self) {
        for t in &mut self.tx {
            t.clear();
        }
        self.host.clear();
    }
}

impl<F: Frame> Pipeline<F> {
    /// Sends `frame` on `port` as is (its Ethernet header already addressed).
    #[inline]
    pub(crate) fn emit(&mut self, frame: F, port: u16, out: &mut Output<F>, local: bool) {
        match out.tx.get_mut(usize::from(port)) {
            Some(q) => {
                q.push(frame);
                if local {
                    self.counters.tx_local += 1;
                } else {
                    self.counters.tx_forward += 1;
                }
            }
            None => self.counters.drop_bad_port += 1,
        }
    }

    /// Hands `frame` to the host, if the host path is on.
    #[inline]
    pub(crate) fn give_host(&mut self, frame: F, out: &mut Output<F>) {
        if self.cfg.host_path {
            out.host.push(frame);
            self.counters.host += 1;
        } else {
            self.counters.drop_host_disabled += 1;
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
    ) {
        let r = self.neigh.transmit(
            frame,
            port,
            nh,
            self.now,
            &self.ports,
            out,
            alloc,
            &mut self.counters,
            None,
        );
        self.count_tx(r, local);
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
    ) {
        let hint = self
            .svcs
            .get_mut(usize::from(svc))
            .and_then(|s| s.servers.get_mut(usize::from(server)))
            .map(|s| &mut s.nh_hint);
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
        self.count_tx(r, false);
    }

    #[inline]
    pub(super) fn count_tx(&mut self, r: neigh::TxResult, local: bool) {
        match r {
            neigh::TxResult::Sent if local => self.counters.tx_local += 1,
            neigh::TxResult::Sent => self.counters.tx_forward += 1,
            neigh::TxResult::Held => self.counters.held += 1,
            neigh::TxResult::Dropped => {}
        }
    }
}
