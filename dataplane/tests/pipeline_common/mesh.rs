//! Several pipelines joined as the control thread (or a cluster's flow
//! synchronisation) joins them: frames are handed to the pipeline chosen by
//! the test, and [`Mesh::sync`] carries each pipeline's events to the others
//! by identity, each resolved in the receiving pipeline's own snapshot. Time
//! is passed in, so every run is the same.

use tack_dataplane::pipeline::{ControlMsg, Event, FlowEvent, PipelineConfig, WorkerSpec};

use super::Harness;

/// Pipelines (workers of one node, or single-worker nodes) and the control
/// plane between them.
pub struct Mesh {
    /// The pipelines, each with its output and clock.
    pub nodes: Vec<Harness>,
}

impl Mesh {
    /// `n` workers of one node, all on `cfg` (software steering).
    pub fn workers(cfg: PipelineConfig, n: u16) -> Mesh {
        let ports = cfg.ports.len();
        Mesh {
            nodes: (0..n)
                .map(|i| Harness::with_worker(cfg.clone(), WorkerSpec::software(i, n, ports)))
                .collect(),
        }
    }

    /// One single-worker node per configuration (the snapshots may differ:
    /// services and servers are matched by identity).
    pub fn nodes(cfgs: Vec<PipelineConfig>) -> Mesh {
        Mesh {
            nodes: cfgs.into_iter().map(Harness::new).collect(),
        }
    }

    /// Frame `f` received by pipeline `node` on `port`: (per port frames, host frames).
    pub fn rx(&mut self, node: usize, port: u16, f: &[u8]) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
        self.nodes[node].rx(port, f)
    }

    /// Advances every pipeline's clock by `ms` and polls it.
    pub fn advance(&mut self, ms: u64) {
        for n in &mut self.nodes {
            n.poll_after(ms);
        }
    }

    /// Carries every pending event of every pipeline to the others; returns
    /// the messages applied (refused ones are counted by the receivers'
    /// `control_rejected`).
    pub fn sync(&mut self) -> usize {
        let mut applied = 0;
        for from in 0..self.nodes.len() {
            let events = self.nodes[from].events();
            let cfg = self.nodes[from].p.services().clone();
            for ev in events {
                // By identity, in the snapshot the event was made in.
                let flow = match ev {
                    Event::Flow(f) => Some(f),
                    Event::Sticky(s) => s.record(&cfg).map(FlowEvent::Sticky),
                    _ => None,
                };
                for (to, n) in self.nodes.iter_mut().enumerate() {
                    if to == from {
                        continue;
                    }
                    let msg = match (flow, ev) {
                        (Some(f), _) => f.to_msg(n.p.services()),
                        (None, Event::Neighbor { port, addr, mac }) => {
                            Some(ControlMsg::Neighbor { port, addr, mac })
                        }
                        _ => None,
                    };
                    if let Some(m) = msg {
                        n.p.apply(m);
                        applied += 1;
                    }
                }
            }
        }
        applied
    }
}
