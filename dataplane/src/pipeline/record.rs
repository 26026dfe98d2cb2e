//! Flow events keyed by identities: what crosses workers and nodes.
//!
//! Indices ([`ServiceIdx`], [`ServerIdx`]) are positions in one snapshot and
//! change with reloads; a worker (or a cluster node) may run another epoch
//! than the one that made an event. The records here name services by
//! [`ServiceIdent`] (VIP, protocol, port) and servers by [`ServerIdent`]
//! (address, port), which every snapshot holding them resolves the same way.
//!
//! * A pipeline whose [`PipelineConfig::flow_events`] is on pushes
//!   [`Event::Flow`] with [`FlowEvent::Opened`] when it opens a connection and
//!   [`FlowEvent::Closed`] when one ends.
//! * [`StickyEvent::record`] turns the sticky table's index-keyed events into
//!   [`StickyRecord`]s.
//! * [`FlowEvent::to_msg`] resolves a record against a snapshot into the
//!   [`ControlMsg`] that installs it in another pipeline
//!   ([`ControlMsg::InstallConnection`], [`ControlMsg::RemoveConnection`],
//!   [`ControlMsg::StickyBinding`]), or `None` if that snapshot has no such
//!   service or server.
//!
//! The translation needs no DPDK and no threads: the tests drive it between
//! pipelines directly.

use super::*;
use crate::model::{RealServer, ServiceIdent};
use crate::sticky::StickyEvent;

/// A real server by identity: its address and port (`None`: the port the
/// client sent to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerIdent {
    /// The server's address.
    pub addr: IpAddr,
    /// The server's port, if it has its own.
    pub port: Option<u16>,
}

impl ServerIdent {
    /// The identity of `s`.
    pub fn of(s: &RealServer) -> ServerIdent {
        ServerIdent {
            addr: s.addr,
            port: s.port,
        }
    }
}

/// A connection by identity: enough for any pipeline whose snapshot has the
/// same service and server to forward its packets both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRecord {
    /// The service (its VIP and protocol are the connection's).
    pub service: ServiceIdent,
    /// Client address.
    pub client: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// The port the client sent to on the VIP.
    pub vip_port: u16,
    /// The server.
    pub server: ServerIdent,
    /// Full NAT: the local address and port.
    pub local: Option<(IpAddr, u16)>,
    /// SYN proxy: the shift from the server's sequence space to the
    /// client's (the record of a SYN-proxied connection leaves once the
    /// server answered).
    pub seq_shift: Option<u32>,
}

/// A sticky binding by identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StickyRecord {
    /// The service.
    pub service: ServiceIdent,
    /// The client key.
    pub key: ClientKey,
    /// The bound server.
    pub server: ServerIdent,
}

/// A flow event by identity (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowEvent {
    /// A connection was opened.
    Opened(ConnRecord),
    /// A connection ended (expired, closed, evicted, flushed or reloaded away).
    Closed(ConnRecord),
    /// A sticky binding was made or moved.
    Sticky(StickyRecord),
}

/// The index of server `ident` in service `svc` of `cfg`.
fn server_index(cfg: &Config, svc: ServiceIdx, ident: &ServerIdent) -> Option<ServerIdx> {
    cfg.service(svc)?
        .servers
        .iter()
        .position(|s| ServerIdent::of(s) == *ident)
        .and_then(|i| ServerIdx::try_from(i).ok())
}

/// The identities of (`svc`, `server`) in `cfg`.
fn identities(
    cfg: &Config,
    svc: ServiceIdx,
    server: ServerIdx,
) -> Option<(ServiceIdent, ServerIdent)> {
    let entry = cfg.entry(svc)?;
    Some((entry.ident(), ServerIdent::of(entry.server(server)?)))
}

impl ConnRecord {
    /// The record of a connection of service `svc` to `server` in `cfg`,
    /// from client `client`:`client_port` to the VIP's `vip_port`.
    pub fn of(
        cfg: &Config,
        svc: ServiceIdx,
        server: ServerIdx,
        (client, client_port): (IpAddr, u16),
        vip_port: u16,
        local: Option<(IpAddr, u16)>,
        seq_shift: Option<u32>,
    ) -> Option<ConnRecord> {
        let (service, server) = identities(cfg, svc, server)?;
        Some(ConnRecord {
            service,
            client,
            client_port,
            vip_port,
            server,
            local,
            seq_shift,
        })
    }

    /// The connection as [`Pipeline::install_connection`] takes it in `cfg`,
    /// if `cfg` has its service and server.
    pub fn spec(&self, cfg: &Config) -> Option<ConnSpec> {
        let svc = cfg.find(&self.service)?;
        Some(ConnSpec {
            client: self.client,
            client_port: self.client_port,
            vip: self.service.vip,
            vip_port: self.vip_port,
            protocol: self.service.protocol.ip_proto(),
            server: server_index(cfg, svc, &self.server)?,
            local: self.local,
            seq_shift: self.seq_shift,
        })
    }
}

impl StickyEvent {
    /// The event by identity, in the snapshot `cfg` it was made in.
    pub fn record(&self, cfg: &Config) -> Option<StickyRecord> {
        let (service, key, server) = match *self {
            StickyEvent::Learned {
                service,
                key,
                server,
            } => (service, key, server),
            StickyEvent::Rebound {
                service, key, to, ..
            } => (service, key, to),
        };
        let (service, server) = identities(cfg, service, server)?;
        Some(StickyRecord {
            service,
            key,
            server,
        })
    }
}

impl FlowEvent {
    /// The message that applies this event to a pipeline running snapshot
    /// `cfg`, or `None` if `cfg` has no such service or server.
    pub fn to_msg(&self, cfg: &Config) -> Option<ControlMsg> {
        match self {
            FlowEvent::Opened(r) => r.spec(cfg).map(ControlMsg::InstallConnection),
            FlowEvent::Closed(r) => {
                cfg.find(&r.service)?;
                Some(ControlMsg::RemoveConnection {
                    client: r.client,
                    client_port: r.client_port,
                    vip: r.service.vip,
                    vip_port: r.vip_port,
                    protocol: r.service.protocol.ip_proto(),
                })
            }
            FlowEvent::Sticky(s) => {
                let service = cfg.find(&s.service)?;
                Some(ControlMsg::StickyBinding {
                    service,
                    key: s.key,
                    server: server_index(cfg, service, &s.server)?,
                })
            }
        }
    }
}

impl<F: Frame> Pipeline<F> {
    /// Pushes a flow event for connection (`svc`, `server`) from `client`
    /// to the VIP's `vip_port`, if flow events are on.
    pub(super) fn flow_event(
        &mut self,
        opened: bool,
        (svc, server): (ServiceIdx, ServerIdx),
        client: (IpAddr, u16),
        vip_port: u16,
        local: Option<(IpAddr, u16)>,
        seq_shift: Option<u32>,
    ) {
        if !self.flow_events {
            return;
        }
        let Some(r) = ConnRecord::of(
            &self.services,
            svc,
            server,
            client,
            vip_port,
            local,
            seq_shift,
        ) else {
            return;
        };
        let ev = if opened {
            FlowEvent::Opened(r)
        } else {
            FlowEvent::Closed(r)
        };
        self.push_event(Event::Flow(ev));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ServerIdx, ServiceIdx};
    use crate::model::{RealServer, Service};

    fn svc(servers: &[&str]) -> Service {
        let mut s = Service::new("203.0.113.10".parse().unwrap(), Protocol::Tcp, Some(80));
        s.servers = servers
            .iter()
            .map(|a| RealServer::new(a.parse().unwrap()))
            .collect();
        s
    }

    #[test]
    fn records_resolve_by_identity_in_another_snapshot() {
        let other = Service::new("203.0.113.11".parse().unwrap(), Protocol::Udp, Some(53));
        let a = Config::new(vec![svc(&["10.0.0.1", "10.0.0.2"])]).unwrap();
        let b = Config::new(vec![other.clone(), svc(&["10.0.0.2", "10.0.0.1"])]).unwrap();
        let client = ("198.51.100.7".parse().unwrap(), 40000);
        let r = ConnRecord::of(&a, ServiceIdx(0), ServerIdx(1), client, 80, None, None).unwrap();
        assert_eq!(r.server.addr, "10.0.0.2".parse::<IpAddr>().unwrap());
        let spec = r.spec(&b).unwrap();
        assert_eq!(
            (spec.server, spec.vip_port, spec.protocol),
            (ServerIdx(0), 80, 6)
        );
        let ev = FlowEvent::Opened(r);
        assert!(matches!(ev.to_msg(&b), Some(ControlMsg::InstallConnection(s)) if s == spec));
        // A snapshot without the service or the server has nothing to install.
        let c = Config::new(vec![other]).unwrap();
        assert!(ev.to_msg(&c).is_none());
        let d = Config::new(vec![svc(&["10.0.0.1"])]).unwrap();
        assert!(ev.to_msg(&d).is_none());
        assert!(FlowEvent::Closed(r).to_msg(&d).is_some());
        // Sticky events from indices to identities and back.
        let key = ClientKey {
            addr: "172.16.0.0".parse().unwrap(),
            prefix: 16,
        };
        let learned = StickyEvent::Learned {
            service: ServiceIdx(0),
            key,
            server: ServerIdx(0),
        };
        let s = learned.record(&a).unwrap();
        assert!(matches!(
            FlowEvent::Sticky(s).to_msg(&b),
            Some(ControlMsg::StickyBinding { service: ServiceIdx(1), key: k, server: ServerIdx(1) }) if k == key
        ));
    }
}
