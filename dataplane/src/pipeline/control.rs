//! The control side of a worker: messages in, events out, timers, configuration swaps.

use super::*;

/// A message from the control thread.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ControlMsg {
    /// A new services snapshot (server states, weights, pools). Indices map
    /// by identity as on a reload; the ports and routes stay.
    Services(Arc<Config>),
    /// A server's state changed (from a health check or the admin API).
    ServerState {
        /// Service index.
        service: ServiceIdx,
        /// Server index.
        server: ServerIdx,
        /// New state.
        state: ServerState,
    },
    /// A server's weight changed.
    ServerWeight {
        /// Service index.
        service: ServiceIdx,
        /// Server index.
        server: ServerIdx,
        /// New weight.
        weight: u16,
    },
    /// A sticky binding learned by another worker or node.
    StickyBinding {
        /// Service index.
        service: ServiceIdx,
        /// Client key.
        key: ClientKey,
        /// Server.
        server: ServerIdx,
    },
    /// A neighbour learned by another worker.
    Neighbor {
        /// Port.
        port: u16,
        /// Address.
        addr: IpAddr,
        /// MAC address.
        mac: EthernetAddress,
    },
    /// Remove every connection.
    FlushConnections,
    /// Remove the sticky bindings of one service, or all.
    FlushSticky {
        /// The service, or `None` for all.
        service: Option<ServiceIdx>,
    },
    /// Remove the connections a filter selects (management API).
    FlushConnectionsWhere(ConnFilter),
    /// Remove one sticky binding (management API).
    FlushStickyKey {
        /// The service.
        service: ServiceIdx,
        /// The client key.
        key: ClientKey,
    },
    /// Remove every neighbour entry.
    FlushNeighbors,
    /// The addresses the cluster has this node answer for beyond its
    /// configuration's; those it gains are announced (gratuitous ARP).
    Claims(AddressClaims),
    /// The cluster's membership (see [`ClusterConfig`]): the nodes that
    /// take new flows, and the draining ones, which keep the flows they
    /// hold.
    ClusterLive {
        /// Live nodes that take new flows.
        active: Vec<crate::cluster::NodeId>,
        /// Live nodes that take no new flows but keep their own.
        draining: Vec<crate::cluster::NodeId>,
    },
    /// Install a connection another worker or node opened
    /// ([`FlowEvent::Opened`] resolved in this snapshot).
    InstallConnection(ConnSpec),
    /// Remove a connection another worker or node closed, if this worker
    /// holds it.
    RemoveConnection {
        /// Client address.
        client: IpAddr,
        /// Client port.
        client_port: u16,
        /// VIP.
        vip: IpAddr,
        /// VIP port.
        vip_port: u16,
        /// IP protocol (6 or 17).
        protocol: u8,
    },
}

/// An event for the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A sticky binding was learned or moved on this worker: publish it.
    Sticky(StickyEvent),
    /// A neighbour was learned from ARP/NDP on this worker: install it in the others.
    Neighbor {
        /// Port.
        port: u16,
        /// Address.
        addr: IpAddr,
        /// MAC address.
        mac: EthernetAddress,
    },
    /// A connection opened or closed, by identity
    /// ([`PipelineConfig::flow_events`]).
    Flow(FlowEvent),
}

impl<F: Frame> Pipeline<F> {
    /// Counts a connection opened on (`svc`, `server`).
    #[inline]
    pub(crate) fn count_conn(&mut self, svc: ServiceIdx, server: ServerIdx) {
        if let Some(c) = self.svc_ctr.get_mut(usize::from(svc)) {
            c.conns += 1;
            if let Some(s) = c.servers.get_mut(usize::from(server)) {
                s.conns += 1;
            }
        }
    }

    pub(crate) fn push_event(&mut self, ev: Event) {
        if self.events.len() < self.cfg.outbox_capacity {
            self.events.push(ev);
        } else {
            self.counters.events_dropped += 1;
        }
    }

    /// Timers: expires connections and sticky bindings, retransmits and
    /// ages neighbour entries (releasing or dropping held frames). Cheap when
    /// nothing is due.
    pub fn poll<A: FrameAlloc<Frame = F>>(
        &mut self,
        now: Time,
        out: &mut Output<F>,
        alloc: &mut A,
    ) {
        self.now = now;
        if !self.announce_pending.is_empty() {
            self.announce_queued(out, alloc);
        }
        self.neigh
            .poll(now, &self.ports, out, alloc, &mut self.counters);
        if now >= self.next_expiry_check {
            self.next_expiry_check = now + TIMER_CHECK;
            self.expire(now);
            self.sync_stats();
        }
    }

    /// Expires what is due in the connection and sticky tables.
    pub(super) fn expire(&mut self, now: Time) {
        let budget = self.cfg.timer_budget.max(1);
        self.expire_in::<Key4>(now, budget);
        self.expire_in::<Key6>(now, budget);
        self.sticky.expire(now, budget);
        self.drain_sticky_events();
    }

    /// Releases what a connection with forward key `key` held (scheduler
    /// count, sticky reference), and reports it closed. Connections a reload
    /// removed are not reported: the snapshot is no longer theirs, and the
    /// other workers and nodes apply the same reload.
    #[inline(never)]
    pub(crate) fn conn_gone<K: crate::conn::FlowKey>(
        &mut self,
        key: &K,
        conn: &crate::conn::Conn,
        reload: bool,
    ) {
        let client = key.src_addr();
        self.counters.conn_closed += 1;
        if reload {
            self.counters.conn_reload_closed += 1;
        } else if self.flow_events {
            let local = self.local_of(conn);
            let ids = (conn.service(), conn.server());
            let client = (client, key.src_port());
            self.flow_event(false, ids, client, key.dst_port(), local, None);
        }
        self.sched.conn_closed(conn.service(), conn.server());
        if ConnFlags::of(conn).sticky {
            self.sticky
                .release(&self.services, conn.service(), client, self.now);
        }
    }

    /// A full-NAT connection's local address and port.
    pub(crate) fn local_of(&self, conn: &crate::conn::Conn) -> Option<(IpAddr, u16)> {
        let (i, port) = conn.local()?;
        let rt = self.svcs.get(usize::from(conn.service()))?;
        Some((*rt.locals.get(usize::from(i))?, port))
    }

    /// Counts an expired connection whose server never answered its SYN
    /// (NAT and full NAT, where the server's packets come back here).
    pub(super) fn note_unanswered(&mut self, conn: &crate::conn::Conn) {
        let xmit = ConnFlags::of(conn).xmit;
        if conn.state() == crate::conn::ConnState::SynSent
            && matches!(xmit, Xmit::Nat | Xmit::FullNat)
            && let Some(s) = self
                .svc_ctr
                .get_mut(usize::from(conn.service()))
                .and_then(|sc| sc.servers.get_mut(usize::from(conn.server())))
        {
            s.syn_unanswered += 1;
        }
    }

    pub(super) fn drain_sticky_events(&mut self) {
        let n = self.sticky.pending_events().len();
        for i in 0..n {
            let ev = self.sticky.pending_events()[i];
            self.push_event(Event::Sticky(ev));
        }
        self.sticky.drain_events();
    }

    pub(super) fn sync_stats(&mut self) {
        self.counters.conn4 = self.conn4.stats;
        self.counters.conn6 = self.conn6.stats;
        self.counters.sticky = self.sticky.stats;
        self.counters.sched = self.sched.stats;
    }

    /// Takes the events produced since the last call.
    pub fn drain_events(&mut self, out: &mut Vec<Event>) {
        self.drain_sticky_events();
        out.append(&mut self.events);
    }

    /// Swaps in a new configuration at a burst boundary. Connections and
    /// sticky bindings follow their services and servers by identity;
    /// connections whose service, server or local address is gone are
    /// closed and counted. If the new ports or routes are unusable the old
    /// ones stay (counted in `control_rejected`) and only the services change.
    /// The tables keep the sizes, timer ticks and hash seeds they were built
    /// with; the connection tables take the new timeouts, for the
    /// connections they hold too
    /// ([`ConnTable::set_timeouts`](crate::conn::ConnTable::set_timeouts)), and the new
    /// full-table policies.
    pub fn set_config(&mut self, cfg: Arc<PipelineConfig>) {
        match build_ports(&cfg, &self.worker) {
            Ok((ports, fib)) => {
                // Each port's walk goes on where it stood (a new port's
                // starts where the first port's stands).
                let old = std::mem::take(&mut self.pickers);
                let start = old.first().map_or(1024, SnatPortPicker::cursor);
                self.pickers = make_pickers(&ports, start)
                    .into_iter()
                    .enumerate()
                    .map(|(i, new)| match old.get(i) {
                        Some(o) => o.clone().for_queue(new.queue()),
                        None => new,
                    })
                    .collect();
                self.ports = ports;
                self.fib = fib;
                if let Ok(steer) = client_steer(&cfg, &self.worker) {
                    self.client_steer = steer;
                }
                self.neigh
                    .retain_ports(self.ports.len(), &mut self.counters);
            }
            Err(e) => {
                log::warn!(
                    "pipeline {}: ports or routes refused: {e}",
                    self.worker.index
                );
                self.counters.control_rejected += 1;
            }
        }
        // The static neighbours of the new configuration, on the ports in use.
        let statics: Vec<StaticNeighbor> = cfg
            .static_neighbors
            .iter()
            .filter(|s| usize::from(s.port) < self.ports.len())
            .copied()
            .collect();
        self.neigh
            .set_static(&statics, self.now, &mut self.counters);
        self.classify_opts.verify_ipv4_checksum = cfg.verify_ipv4_checksum;
        self.conn4.set_timeouts(cfg.conn4.timeouts);
        self.conn6.set_timeouts(cfg.conn6.timeouts);
        self.conn4.set_full_policy(cfg.conn4.full_policy);
        self.conn6.set_full_policy(cfg.conn6.full_policy);
        let services = cfg.services.clone();
        self.flow_events = cfg.flow_events;
        self.cfg = cfg;
        self.adopt_services(services);
        self.rebuild_addrs();
        self.counters.reloads += 1;
        self.sync_stats();
    }

    /// Adopts `changed`, a copy of the services with one server changed;
    /// `false` if there is none (the change named no such server).
    pub(super) fn adopt_changed(&mut self, changed: Option<Config>) -> bool {
        let Some(c) = changed else {
            return false;
        };
        self.adopt_services(Arc::new(c));
        true
    }

    /// Adopts a services snapshot: maps tables by identity, rebuilds the
    /// per-service data.
    pub(super) fn adopt_services(&mut self, new: Arc<Config>) {
        let map = Config::reload_map(&self.services, &new);
        if !map.is_identity() {
            self.drain_in::<Key4>(Some(&map));
            self.drain_in::<Key6>(Some(&map));
            self.sticky.apply_reload(&map);
            // Sticky events waiting in the outbox were made in the old
            // indices; they leave in the new ones (or not at all).
            let before = self.events.len();
            self.events.retain_mut(|ev| match ev {
                Event::Sticky(s) => s.remap(&map).map(|n| *s = n).is_some(),
                _ => true,
            });
            self.sticky.stats.reload_events_dropped += (before - self.events.len()) as u64;
            self.sched.reconfigure(&new, Some(&map));
        } else {
            self.sched.reconfigure(&new, None);
        }
        let mut ctr = fresh_counters(&new);
        for (old, c) in core::mem::take(&mut self.svc_ctr).into_iter().enumerate() {
            let Some(m) = map.service(ServiceIdx(old as u16)) else {
                continue;
            };
            let Some(slot) = ctr.get_mut(usize::from(m.new_index)) else {
                continue;
            };
            let servers = core::mem::take(&mut slot.servers);
            *slot = ServiceCounters {
                servers,
                ..c.clone()
            };
            for (j, sc) in c.servers.iter().enumerate() {
                if let Some(Some(nj)) = m.servers.get(j)
                    && let Some(dst) = slot.servers.get_mut(usize::from(*nj))
                {
                    *dst = *sc;
                }
            }
        }
        self.svc_ctr = ctr;
        self.services = new;
        self.svcs = build_services(&self.services, &self.fib, &self.ports);
        self.nat_servers = build_nat_servers(&self.services);
        self.server_addrs = build_server_addrs(&self.services);
    }

    /// Per-service (and per-server) traffic counters, by service index of
    /// the current snapshot ([`Pipeline::services`]). They follow their
    /// service and servers across reloads.
    pub fn service_counters(&self) -> &[ServiceCounters] {
        &self.svc_ctr
    }

    /// Recomputes the address map after the ports, the services (VIPs and
    /// local addresses come from them) or the claims changed, and announces
    /// what is new.
    pub(super) fn rebuild_addrs(&mut self) {
        let addrs = build_addrs(&self.ports, &self.services, &self.claims);
        let old = core::mem::replace(&mut self.addrs, addrs);
        self.queue_new_addresses(&old);
    }

    /// Applies a message from the control thread.
    pub fn apply(&mut self, msg: ControlMsg) {
        let ok = match msg {
            ControlMsg::Services(cfg) => {
                self.adopt_services(cfg);
                self.rebuild_addrs();
                true
            }
            ControlMsg::ServerState {
                service,
                server,
                state,
            } => {
                let changed = self.services.with_server_state(service, server, state);
                self.adopt_changed(changed.ok())
            }
            ControlMsg::ServerWeight {
                service,
                server,
                weight,
            } => {
                let changed = self.services.with_server_weight(service, server, weight);
                self.adopt_changed(changed.ok())
            }
            ControlMsg::StickyBinding {
                service,
                key,
                server,
            } => self
                .sticky
                .install(&self.services, service, key, server, self.now)
                .is_ok(),
            ControlMsg::Neighbor { port, addr, mac } => {
                // Frames this releases go out on the next poll.
                let ok = self.neigh.learn(
                    port,
                    addr,
                    mac,
                    self.now,
                    neigh::Learn::INSTALL,
                    &self.ports,
                    None,
                    &mut self.counters,
                );
                if ok {
                    self.counters.neigh_installed += 1;
                }
                ok
            }
            ControlMsg::FlushConnections => {
                self.drain_in::<Key4>(None);
                self.drain_in::<Key6>(None);
                true
            }
            ControlMsg::FlushSticky { service } => {
                match service {
                    Some(s) => self.sticky.flush_service(s),
                    None => self.sticky.flush_all(),
                };
                true
            }
            ControlMsg::FlushConnectionsWhere(filter) => {
                self.flush_connections_where(&filter);
                true
            }
            ControlMsg::FlushStickyKey { service, key } => {
                self.sticky.flush_key(service, &key);
                true
            }
            ControlMsg::FlushNeighbors => {
                self.neigh.flush(&mut self.counters);
                true
            }
            ControlMsg::ClusterLive { active, draining } => {
                self.set_cluster_live(active, draining);
                true
            }
            ControlMsg::Claims(c) => {
                self.claims = c;
                self.rebuild_addrs();
                true
            }
            ControlMsg::InstallConnection(spec) => {
                let now = self.now;
                self.install_connection(now, &spec).is_ok()
            }
            ControlMsg::RemoveConnection {
                client,
                client_port,
                vip,
                vip_port,
                protocol,
            } => {
                let t = flow::Tuple {
                    src: client,
                    dst: vip,
                    sport: client_port,
                    dport: vip_port,
                    proto: protocol,
                };
                match self.conn_lookup(&t) {
                    Some(h) if !h.is_reply() => {
                        self.conn_close(&h);
                        true
                    }
                    _ => false,
                }
            }
        };
        if ok {
            self.counters.control_applied += 1;
        } else {
            self.counters.control_rejected += 1;
        }
        self.sync_stats();
    }
}
