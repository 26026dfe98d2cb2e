//! The management operations on the control plane: each [`Op`] checked
//! against the running profile, then applied whole (one configuration
//! epoch or one message to every worker) or refused with nothing changed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::{ServerState, natural_class};
use tack_dataplane::pipeline::{ConnFilter, ConnView, ControlMsg, ServerCounters, ServiceCounters};
use tack_dataplane::sticky::ClientKey;

use super::{ControlPlane, CtlError, ReloadOrigin};
use crate::api::op::{Answer, Op, Origin};
use crate::api::types::{
    self as doc, AdminState, ConnSelect, ConnectionCount, ConnectionList, Done, NewServer,
    ServerChange, StickySelect, StickySetting,
};
use crate::health::HealthState;
use crate::metrics::MetricsSample;
use crate::msg::{Query, Reply, ToWorker};
use crate::profile::{PersistenceSection, Profile, ServerSection};
use crate::report::WorkerSnapshot;

/// Connections listed per worker when no limit is given.
pub const DEFAULT_LIST: usize = 20;
/// The most connections listed per worker.
pub const MAX_LIST: usize = 100_000;

impl ControlPlane {
    /// Carries out one management operation that `origin` asked for.
    pub fn handle(&mut self, op: Op, origin: Origin) -> Result<Answer, CtlError> {
        Ok(match op {
            Op::Status => Answer::Status(self.status()),
            Op::Counters => Answer::Counters(self.counters_doc()),
            Op::Metrics => Answer::Metrics(Box::new(self.metrics_sample())),
            Op::Services => Answer::Services(self.services()),
            Op::Neighbours => Answer::Neighbours(self.neighbours()?),
            Op::Connections { select, limit } => {
                Answer::Connections(self.connections(&select, limit)?)
            }
            Op::CountConnections(select) => {
                let filter = self.conn_filter(&select)?;
                let list = self.connections_where(filter, 0)?;
                Answer::Count(ConnectionCount {
                    connections: list.matching,
                })
            }
            Op::FlushConnections(select) => {
                let filter = self.conn_filter(&select)?;
                self.broadcast(ControlMsg::FlushConnectionsWhere(filter));
                Answer::Done(Done {
                    message: "connections flushed".into(),
                })
            }
            Op::Sticky(select) => Answer::Sticky(self.sticky(&select)?),
            Op::FlushSticky(select) => Answer::Done(self.flush_sticky(&select)?),
            Op::SetSticky { service, setting } => {
                Answer::Done(self.set_sticky(&service, &setting)?)
            }
            Op::AddServer { service, server } => Answer::Done(self.add_server(&service, server)?),
            Op::RemoveServer { service, server } => {
                let (i, j) = self.locate(&service, &server)?;
                let mut p = self.profile.clone();
                let removed = p.services[i].servers.remove(j).display_name();
                for s in &mut p.services[i].servers {
                    if s.backup.as_deref() == Some(removed.as_str()) {
                        s.backup = None;
                    }
                }
                self.apply_profile(p)?;
                Answer::Done(Done {
                    message: format!("{service}/{server}: removed"),
                })
            }
            Op::ChangeServer {
                service,
                server,
                change,
            } => Answer::Done(self.change_server(&service, &server, &change)?),
            Op::Cluster => Answer::Cluster(self.cluster_doc()),
            Op::Redirects => Answer::Redirects(super::redirect::doc(
                &self.profile,
                |svc, srv| self.health.is_down(svc, srv),
                &self.snapshots,
            )),
            Op::ClusterDrain(drain) => Answer::Done(self.cluster_drain(drain)?),
            Op::ClusterScheduler(active) => Answer::Done(self.cluster_scheduler(active)?),
            Op::Reload => Answer::Reloaded(self.reload_from(match origin {
                Origin::Socket => ReloadOrigin::Tackctl,
                Origin::Http => ReloadOrigin::Http,
            })?),
        })
    }

    fn service_index(&self, name: &str) -> Result<usize, CtlError> {
        self.profile
            .services
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| CtlError::UnknownService(name.to_string()))
    }

    fn server_index(&self, service: usize, name: &str) -> Result<usize, CtlError> {
        let svc = &self.profile.services[service];
        svc.servers
            .iter()
            .position(|s| s.display_name() == name || s.address.to_string() == name)
            .ok_or_else(|| CtlError::UnknownServer {
                service: svc.name.clone(),
                server: name.to_string(),
            })
    }

    fn locate(&self, svc: &str, server: &str) -> Result<(usize, usize), CtlError> {
        let i = self.service_index(svc)?;
        Ok((i, self.server_index(i, server)?))
    }

    pub(super) fn broadcast(&mut self, msg: ControlMsg) {
        for w in 0..self.to_workers.len() {
            self.send(w, ToWorker::Msg(msg.clone()));
        }
    }

    fn change_server(
        &mut self,
        service: &str,
        server: &str,
        change: &ServerChange,
    ) -> Result<Done, CtlError> {
        let (i, j) = self.locate(service, server)?;
        if change.weight.is_none() && change.state.is_none() {
            return Err(CtlError::Incomplete("give weight and/or state"));
        }
        let mut p = self.profile.clone();
        let s = &mut p.services[i].servers[j];
        let mut what = Vec::new();
        if let Some(st) = change.state {
            s.state = server_state(st);
            what.push(format!("state {}", state_name(st)));
        }
        if let Some(w) = change.weight {
            s.weight = w;
            what.push(format!("weight {w}"));
        }
        self.apply_profile(p)?;
        Ok(Done {
            message: format!("{service}/{server}: {}", what.join(", ")),
        })
    }

    fn add_server(&mut self, service: &str, new: NewServer) -> Result<Done, CtlError> {
        let i = self.service_index(service)?;
        let weight = new.weight.unwrap_or(1);
        let mut p = self.profile.clone();
        p.services[i].servers.push(ServerSection {
            name: new.name.clone(),
            address: new.address,
            port: new.port,
            weight,
            state: server_state(new.state.unwrap_or(AdminState::Up)),
            backup: None,
            url: None,
            https_url: None,
            directed: None,
            health: None,
        });
        let name = p.services[i]
            .servers
            .last()
            .map(ServerSection::display_name);
        self.apply_profile(p)?;
        Ok(Done {
            message: format!(
                "{service}: server {} added with weight {weight}",
                name.unwrap_or_default()
            ),
        })
    }

    /// LocalDirector's `sticky <vid> <minutes> [nc-subnet]`: natural-class
    /// persistence for a service (0 minutes turns persistence off).
    fn set_sticky(&mut self, service: &str, s: &StickySetting) -> Result<Done, CtlError> {
        let i = self.service_index(service)?;
        let networks = match &s.network {
            None => Vec::new(),
            Some(n) => nc_subnet(n)?,
        };
        let mut p = self.profile.clone();
        p.services[i].persistence = (s.minutes > 0).then_some(PersistenceSection {
            timeout: s.minutes,
            netmask: None,
            prefix: None,
            natural_class: true,
            networks,
        });
        self.apply_profile(p)?;
        let message = match s.minutes {
            0 => format!("{service}: persistence off"),
            m => format!(
                "{service}: natural-class persistence, {m} minute(s){}",
                s.network
                    .as_ref()
                    .map(|n| format!(" for {n}"))
                    .unwrap_or_default()
            ),
        };
        Ok(Done { message })
    }

    /// The worker-side filter for a selection by names.
    fn conn_filter(&self, s: &ConnSelect) -> Result<ConnFilter, CtlError> {
        let mut f = ConnFilter::default();
        if let Some(svc) = &s.service {
            let i = self.service_index(svc)?;
            f.service = Some(ServiceIdx(i as u16));
            if let Some(server) = &s.server {
                f.server = Some(ServerIdx(self.server_index(i, server)? as u16));
            }
        } else if s.server.is_some() {
            return Err(CtlError::Incomplete("a server filter needs its service"));
        }
        if let Some(c) = &s.client {
            f.client = Some(parse_network(c)?);
        }
        Ok(f)
    }

    fn connections(&mut self, s: &ConnSelect, limit: usize) -> Result<ConnectionList, CtlError> {
        if limit > MAX_LIST {
            return Err(CtlError::bad(&limit.to_string(), "a limit (0..=100000)"));
        }
        let filter = self.conn_filter(s)?;
        self.connections_where(filter, limit)
    }

    fn connections_where(
        &mut self,
        filter: ConnFilter,
        limit: usize,
    ) -> Result<ConnectionList, CtlError> {
        let replies = self.query(Query::Connections { filter, limit })?;
        let mut list = ConnectionList {
            matching: 0,
            table_entries: 0,
            connections: Vec::new(),
        };
        for (w, r) in replies.into_iter().enumerate() {
            if let Reply::Connections {
                total,
                matching,
                list: conns,
                ..
            } = r
            {
                list.table_entries += total as u64;
                list.matching += matching as u64;
                for c in conns {
                    list.connections.push(self.connection_doc(w, &c));
                }
            }
        }
        Ok(list)
    }

    fn connection_doc(&self, worker: usize, c: &ConnView) -> doc::Connection {
        let svc = self.profile.services.get(usize::from(c.service));
        let server = svc
            .and_then(|s| s.servers.get(usize::from(c.server)))
            .filter(|s| Some(s.address) == c.server_addr)
            .map(ServerSection::display_name);
        doc::Connection {
            worker: worker as u64,
            protocol: match c.protocol {
                6 => "tcp".into(),
                17 => "udp".into(),
                p => p.to_string(),
            },
            client: c.client,
            client_port: c.client_port,
            vip: c.vip,
            vip_port: c.vip_port,
            service: svc.map_or_else(|| "?".into(), |s| s.name.clone()),
            server,
            server_address: c.server_addr,
            state: format!("{:?}", c.state),
        }
    }

    /// The services with what the workers last published (every
    /// `runtime.stats_interval_ms`): no walk of their tables.
    fn services(&self) -> Vec<doc::Service> {
        let n = self.profile.services.len();
        services_doc(
            &self.profile,
            &open_sums(n, &self.snapshots),
            &service_sums(n, &self.snapshots),
            &self.health,
        )
    }

    fn sticky(&mut self, select: &StickySelect) -> Result<Vec<doc::StickyBinding>, CtlError> {
        let only = match &select.service {
            Some(s) => Some(ServiceIdx(self.service_index(s)? as u16)),
            None => None,
        };
        let key = match &select.key {
            Some(k) => {
                let (addr, prefix) = parse_network(k)?;
                Some(ClientKey { addr, prefix })
            }
            None => None,
        };
        let replies = self.query(Query::Sticky)?;
        // One row per (service, key): the server, its open connections
        // summed over the workers (ended ones lingering in TIME_WAIT or
        // CLOSE are not counted: `Pipeline::sticky_bindings`), and on how
        // many workers it is known.
        let mut rows: BTreeMap<(ServiceIdx, ClientKey), (Option<ServerIdx>, u64, u64)> =
            BTreeMap::new();
        for r in replies {
            if let Reply::Sticky(list) = r {
                let wanted = |b: &tack_dataplane::sticky::StickyBinding| {
                    only.is_none_or(|s| s == b.service) && key.is_none_or(|k| k == b.key)
                };
                for b in list.into_iter().filter(wanted) {
                    let e = rows.entry((b.service, b.key)).or_insert((b.server, 0, 0));
                    e.1 += u64::from(b.active);
                    e.2 += 1;
                }
            }
        }
        Ok(rows
            .into_iter()
            .map(|((svc, key), (server, active, workers))| {
                let s = self.profile.services.get(usize::from(svc));
                doc::StickyBinding {
                    service: s.map_or_else(|| "?".into(), |x| x.name.clone()),
                    key: key.to_string(),
                    server: server
                        .and_then(|j| s.and_then(|x| x.servers.get(usize::from(j))))
                        .map(ServerSection::display_name),
                    active,
                    workers,
                }
            })
            .collect())
    }

    fn flush_sticky(&mut self, select: &StickySelect) -> Result<Done, CtlError> {
        let (msg, message) = match (&select.service, &select.key) {
            (None, None) => (
                ControlMsg::FlushSticky { service: None },
                "all sticky bindings flushed".to_string(),
            ),
            (Some(svc), None) => {
                let i = self.service_index(svc)?;
                (
                    ControlMsg::FlushSticky {
                        service: Some(ServiceIdx(i as u16)),
                    },
                    format!("sticky bindings of `{svc}` flushed"),
                )
            }
            (Some(svc), Some(key)) => {
                let i = self.service_index(svc)?;
                let (addr, prefix) = parse_network(key)?;
                (
                    ControlMsg::FlushStickyKey {
                        service: ServiceIdx(i as u16),
                        key: ClientKey { addr, prefix },
                    },
                    format!("sticky binding {key} of `{svc}` flushed"),
                )
            }
            (None, Some(_)) => {
                return Err(CtlError::Incomplete("a key needs its service"));
            }
        };
        self.broadcast(msg);
        Ok(Done { message })
    }

    fn neighbours(&mut self) -> Result<Vec<doc::Neighbour>, CtlError> {
        let replies = self.query(Query::Neighbours)?;
        let mut rows: BTreeMap<(u16, IpAddr), doc::Neighbour> = BTreeMap::new();
        for r in replies {
            if let Reply::Neighbours(list) = r {
                for n in list {
                    let port = self
                        .profile
                        .ports
                        .get(usize::from(n.port))
                        .map_or_else(|| "?".into(), |p| p.name.clone());
                    rows.entry((n.port, n.addr)).or_insert(doc::Neighbour {
                        port,
                        address: n.addr,
                        mac: n.mac.map(|m| m.to_string()),
                        state: format!("{:?}", n.state),
                    });
                }
            }
        }
        Ok(rows.into_values().collect())
    }

    fn status(&self) -> doc::Status {
        let ports = self
            .profile
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| doc::PortInfo {
                name: p.name.clone(),
                device: p.device.clone(),
                mac: tack_dataplane::wire::EthernetAddress(
                    self.macs.get(i).copied().unwrap_or_default(),
                )
                .to_string(),
                addresses: p.addresses.iter().map(ToString::to_string).collect(),
            })
            .collect();
        doc::Status {
            workers: self.to_workers.len() as u64,
            ports,
            services: self.profile.services.len() as u64,
            epochs: self.counters.epochs,
            rx_packets: self.snapshots.iter().map(|w| w.lp.rx_packets).sum(),
            tx_packets: self.snapshots.iter().map(|w| w.lp.tx_packets).sum(),
        }
    }

    fn counters_doc(&self) -> doc::Counters {
        let ports = self
            .profile
            .ports
            .iter()
            .zip(self.port_totals())
            .map(|(p, st)| (p.name.clone(), crate::report::port_counters(&st)))
            .collect();
        let workers = self
            .snapshots
            .iter()
            .map(|w| {
                let mut m = BTreeMap::new();
                w.lp.for_each(|n, v| {
                    m.insert(n.to_string(), v);
                });
                for (n, v) in &w.pipeline {
                    m.insert(n.to_string(), *v);
                }
                m
            })
            .collect();
        let mut control = BTreeMap::new();
        self.counters.for_each(|n, v| {
            control.insert(n.to_string(), v);
        });
        self.more_counters(|n, v| {
            control.insert(n, v);
        });
        doc::Counters {
            ports,
            workers,
            control,
        }
    }

    fn metrics_sample(&self) -> MetricsSample {
        MetricsSample {
            ports: self
                .profile
                .ports
                .iter()
                .map(|p| p.name.clone())
                .zip(self.port_totals())
                .collect(),
            workers: self.snapshots.clone(),
            services: self.services(),
            control: self.counters,
            more: {
                let mut v = Vec::new();
                self.more_counters(|k, n| v.push((k, n)));
                v
            },
        }
    }
}

/// Each server's open connections summed over the workers, by service
/// index and pool order of the running configuration.
fn open_sums(n: usize, workers: &[WorkerSnapshot]) -> Vec<Vec<u64>> {
    let mut sums: Vec<Vec<u64>> = vec![Vec::new(); n];
    for w in workers {
        for (sum, open) in sums.iter_mut().zip(&w.open) {
            if sum.len() < open.len() {
                sum.resize(open.len(), 0);
            }
            for (a, b) in sum.iter_mut().zip(open) {
                *a += u64::from(*b);
            }
        }
    }
    sums
}

/// Each service's traffic counters summed over the workers, by index of
/// the running configuration (a worker still on an older epoch may lag).
fn service_sums(n: usize, workers: &[WorkerSnapshot]) -> Vec<ServiceCounters> {
    let mut sums: Vec<ServiceCounters> = vec![ServiceCounters::default(); n];
    for w in workers {
        for (sum, c) in sums.iter_mut().zip(&w.services) {
            sum.packets_in += c.packets_in;
            sum.bytes_in += c.bytes_in;
            sum.packets_out += c.packets_out;
            sum.bytes_out += c.bytes_out;
            sum.conns += c.conns;
            sum.no_server += c.no_server;
            if sum.servers.len() < c.servers.len() {
                sum.servers
                    .resize(c.servers.len(), ServerCounters::default());
            }
            for (a, b) in sum.servers.iter_mut().zip(&c.servers) {
                a.conns += b.conns;
                a.packets += b.packets;
                a.bytes += b.bytes;
                a.syn_unanswered += b.syn_unanswered;
                a.resets += b.resets;
            }
        }
    }
    sums
}

/// The services of `profile` with their open connections and traffic.
fn services_doc(
    profile: &Profile,
    open: &[Vec<u64>],
    sums: &[ServiceCounters],
    health: &HealthState,
) -> Vec<doc::Service> {
    let none = ServiceCounters::default();
    profile
        .services
        .iter()
        .enumerate()
        .map(|(i, svc)| (i, svc, sums.get(i).unwrap_or(&none)))
        .map(|(i, svc, sum)| doc::Service {
            name: svc.name.clone(),
            vip: svc.vip,
            protocol: svc.protocol.to_string(),
            port: svc.port,
            mode: format!("{:?}", svc.mode).to_lowercase(),
            scheduler: sched_name(svc.scheduler).to_string(),
            persistence: svc.persistence.as_ref().map(|p| doc::Persistence {
                timeout_minutes: p.timeout,
                key: match (p.netmask, p.prefix, p.natural_class) {
                    (Some(m), _, _) => format!("netmask {m}"),
                    (_, Some(l), _) => format!("prefix /{l}"),
                    (_, _, true) => "natural class".into(),
                    _ => "address".into(),
                },
                networks: p.networks.iter().map(ToString::to_string).collect(),
            }),
            connections: sum.conns,
            no_server: sum.no_server,
            packets_in: sum.packets_in,
            bytes_in: sum.bytes_in,
            packets_out: sum.packets_out,
            bytes_out: sum.bytes_out,
            servers: svc
                .servers
                .iter()
                .enumerate()
                .map(|(j, sv)| (j, sv, sum.servers.get(j).copied().unwrap_or_default()))
                .map(|(j, sv, traffic)| doc::Server {
                    name: sv.display_name(),
                    address: sv.address,
                    port: sv.port,
                    weight: sv.weight,
                    state: admin_state(sv.state),
                    active_connections: open.get(i).and_then(|o| o.get(j)).copied().unwrap_or(0),
                    connections: traffic.conns,
                    packets: traffic.packets,
                    bytes: traffic.bytes,
                    health: svc.health_of(sv).map(|_| {
                        if health.is_down(&svc.name, &sv.display_name()) {
                            "down".to_string()
                        } else {
                            "up".to_string()
                        }
                    }),
                    syn_unanswered: traffic.syn_unanswered,
                    resets: traffic.resets,
                })
                .collect(),
        })
        .collect()
}

/// The short name a profile uses for a scheduler.
fn sched_name(s: tack_dataplane::model::SchedulerKind) -> &'static str {
    use tack_dataplane::model::SchedulerKind as K;
    match s {
        K::RoundRobin => "rr",
        K::WeightedRoundRobin => "wrr",
        K::LeastConn => "lc",
        K::WeightedLeastConn => "wlc",
        K::SourceHash => "sh",
        K::Maglev => "maglev",
        K::Rendezvous => "hrw",
        K::Failover => "failover",
    }
}

/// The pipeline's state for an administrative state.
pub fn server_state(s: AdminState) -> ServerState {
    match s {
        AdminState::Up => ServerState::Up,
        AdminState::Drain => ServerState::Drain,
        AdminState::Maint => ServerState::Maint,
        AdminState::Down => ServerState::Down,
    }
}

/// The administrative state of a pipeline state.
pub fn admin_state(s: ServerState) -> AdminState {
    match s {
        ServerState::Up => AdminState::Up,
        ServerState::Drain => AdminState::Drain,
        ServerState::Maint => AdminState::Maint,
        ServerState::Down => AdminState::Down,
    }
}

/// A state's name in the API.
pub fn state_name(s: AdminState) -> &'static str {
    match s {
        AdminState::Up => "up",
        AdminState::Drain => "drain",
        AdminState::Maint => "maint",
        AdminState::Down => "down",
    }
}

/// An address (`10.1.2.3`: one host) or a network (`172.16.0.0/16`), as an
/// address and prefix length; host bits must be zero.
fn parse_network(s: &str) -> Result<(IpAddr, u8), CtlError> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok((a, if a.is_ipv4() { 32 } else { 128 }));
    }
    match s.parse::<ipnet::IpNet>() {
        Ok(n) if n.trunc() == n => Ok((n.addr(), n.prefix_len())),
        _ => Err(CtlError::bad(s, "an address or a network ADDR/LEN")),
    }
}

/// LocalDirector's `nc-subnet`: a classful network (`172.16.0.0`), or the
/// patent's first-octet form (`172`: every classful network whose first
/// octet it is). A class A first octet names one network, a class B one
/// 256; a class C one would name 65536 and is refused (give the network).
pub fn nc_subnet(s: &str) -> Result<Vec<Ipv4Addr>, CtlError> {
    const EXPECTED: &str =
        "a classful network like 172.16.0.0, or a class A or B first octet like 172";
    if let Ok(octet) = s.parse::<u8>() {
        let first = Ipv4Addr::new(octet, 0, 0, 0);
        return match natural_class(first).prefix() {
            Some(8) => Ok(vec![first]),
            Some(16) => Ok((0..=255).map(|b| Ipv4Addr::new(octet, b, 0, 0)).collect()),
            _ => Err(CtlError::bad(s, EXPECTED)),
        };
    }
    let a: Ipv4Addr = s.parse().map_err(|_| CtlError::bad(s, EXPECTED))?;
    match natural_class(a).prefix() {
        Some(p) if tack_dataplane::addr::mask_v4(a, p) == a => Ok(vec![a]),
        _ => Err(CtlError::bad(s, EXPECTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nc_subnet_takes_networks_and_first_octets() {
        assert_eq!(
            nc_subnet("172.16.0.0").unwrap(),
            vec![Ipv4Addr::new(172, 16, 0, 0)]
        );
        let b = nc_subnet("172").unwrap();
        assert_eq!(b.len(), 256);
        assert!(b.contains(&Ipv4Addr::new(172, 16, 0, 0)));
        assert!(b.contains(&Ipv4Addr::new(172, 31, 0, 0)));
        assert_eq!(nc_subnet("10").unwrap(), vec![Ipv4Addr::new(10, 0, 0, 0)]);
        for bad in ["192", "224", "172.16.1.0", "here", "300", ""] {
            let e = nc_subnet(bad).unwrap_err().to_string();
            assert!(e.contains("classful network"), "{bad}: {e}");
        }
    }

    #[test]
    fn networks_are_addresses_or_prefixes_without_host_bits() {
        assert_eq!(
            parse_network("10.1.2.3").unwrap(),
            ("10.1.2.3".parse().unwrap(), 32)
        );
        assert_eq!(
            parse_network("172.16.0.0/16").unwrap(),
            ("172.16.0.0".parse().unwrap(), 16)
        );
        assert_eq!(parse_network("fd00::/64").unwrap().1, 64);
        assert!(parse_network("172.16.0.1/16").is_err());
        assert!(parse_network("nowhere").is_err());
    }
}
