//! The typed requests the management thread hands to the control thread
//! ([`Op`] in a [`Request`]) and their answers ([`Answer`]).

use std::fmt;

use tokio::sync::oneshot;

use super::types::{
    Cluster, ConnSelect, ConnectionCount, ConnectionList, Counters, Done, Neighbour, NewServer,
    Redirects, Reloaded, ServerChange, Service, Status, StickyBinding, StickySelect, StickySetting,
};
use crate::ctl::CtlError;
use crate::metrics::MetricsSample;

/// One management operation.
#[derive(Debug, Clone)]
pub enum Op {
    /// Ports, workers, totals.
    Status,
    /// Every counter.
    Counters,
    /// The samples `/metrics` is rendered from.
    Metrics,
    /// Services and servers.
    Services,
    /// The ARP / NDP table.
    Neighbours,
    /// Connections matching a selection, the first `limit` of each worker.
    Connections {
        /// Which.
        select: ConnSelect,
        /// Most listed per worker.
        limit: usize,
    },
    /// How many connections match.
    CountConnections(ConnSelect),
    /// Remove the connections that match.
    FlushConnections(ConnSelect),
    /// Sticky bindings (of a service, or all).
    Sticky(StickySelect),
    /// Remove sticky bindings: all, a service's, or one key of a service.
    FlushSticky(StickySelect),
    /// LocalDirector's `sticky <vid> <minutes> [nc-subnet]`.
    SetSticky {
        /// The service.
        service: String,
        /// Minutes and network.
        setting: StickySetting,
    },
    /// Add a real server.
    AddServer {
        /// The service.
        service: String,
        /// The server.
        server: NewServer,
    },
    /// Remove a real server.
    RemoveServer {
        /// The service.
        service: String,
        /// The server's name or address.
        server: String,
    },
    /// Change a server's weight and/or state.
    ChangeServer {
        /// The service.
        service: String,
        /// The server's name or address.
        server: String,
        /// The change.
        change: ServerChange,
    },
    /// Re-read the profile file.
    Reload,
    /// The cluster's nodes and link counters.
    Cluster,
    /// The redirect and SYN-proxied services.
    Redirects,
    /// Take this node out of the new flows' ranking (`true`) or back in.
    ClusterDrain(bool),
    /// Make this node the active scheduler (`true`) or a standby one
    /// (`entry: scheduler`; the election says which).
    ClusterScheduler(bool),
}

impl Op {
    /// Whether the operation changes the configuration or the tables
    /// (`tack` logs those with their outcome; reloads log themselves).
    pub fn changes(&self) -> bool {
        matches!(
            self,
            Op::FlushConnections(_)
                | Op::FlushSticky(_)
                | Op::SetSticky { .. }
                | Op::AddServer { .. }
                | Op::RemoveServer { .. }
                | Op::ChangeServer { .. }
        )
    }
}

/// The operation in `tackctl`'s words (for `tack`'s log).
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sel = |s: &ConnSelect| {
            let mut w = String::new();
            for (k, v) in [
                ("service", &s.service),
                ("server", &s.server),
                ("client", &s.client),
            ] {
                if let Some(v) = v {
                    w.push_str(&format!(" {k} {v}"));
                }
            }
            w
        };
        match self {
            Op::Status => f.write_str("status"),
            Op::Cluster => f.write_str("cluster"),
            Op::Redirects => f.write_str("redirects"),
            Op::ClusterDrain(true) => f.write_str("cluster drain"),
            Op::ClusterDrain(false) => f.write_str("cluster activate"),
            Op::ClusterScheduler(true) => f.write_str("cluster scheduler active"),
            Op::ClusterScheduler(false) => f.write_str("cluster scheduler standby"),
            Op::Counters => f.write_str("counters"),
            Op::Metrics => f.write_str("metrics"),
            Op::Services => f.write_str("services"),
            Op::Neighbours => f.write_str("neighbours"),
            Op::Connections { select, limit } => write!(f, "connections{} {limit}", sel(select)),
            Op::CountConnections(s) => write!(f, "connections count{}", sel(s)),
            Op::FlushConnections(s) => write!(f, "connections flush{}", sel(s)),
            Op::Sticky(_) => f.write_str("sticky show"),
            Op::FlushSticky(s) => {
                f.write_str("sticky flush")?;
                for v in [&s.service, &s.key].into_iter().flatten() {
                    write!(f, " {v}")?;
                }
                Ok(())
            }
            Op::SetSticky { service, setting } => {
                write!(f, "sticky {service} {}", setting.minutes)?;
                match &setting.network {
                    Some(n) => write!(f, " {n}"),
                    None => Ok(()),
                }
            }
            Op::AddServer { service, server } => {
                write!(f, "server {service} add {}", server.address)?;
                if let Some(p) = server.port {
                    write!(f, " port {p}")?;
                }
                if let Some(w) = server.weight {
                    write!(f, " weight {w}")?;
                }
                Ok(())
            }
            Op::RemoveServer { service, server } => write!(f, "server {service} remove {server}"),
            Op::ChangeServer {
                service,
                server,
                change,
            } => {
                write!(f, "server {service} {server}")?;
                if let Some(s) = change.state {
                    write!(f, " state {}", crate::ctl::state_name(s))?;
                }
                if let Some(w) = change.weight {
                    write!(f, " weight {w}")?;
                }
                Ok(())
            }
            Op::Reload => f.write_str("reload"),
        }
    }
}

/// What an operation answers.
#[derive(Debug)]
pub enum Answer {
    /// [`Op::Status`].
    Status(Status),
    /// [`Op::Counters`].
    Counters(Counters),
    /// [`Op::Metrics`].
    Metrics(Box<MetricsSample>),
    /// [`Op::Services`].
    Services(Vec<Service>),
    /// [`Op::Neighbours`].
    Neighbours(Vec<Neighbour>),
    /// [`Op::Connections`].
    Connections(ConnectionList),
    /// [`Op::CountConnections`].
    Count(ConnectionCount),
    /// [`Op::Sticky`].
    Sticky(Vec<StickyBinding>),
    /// A change applied.
    Done(Done),
    /// [`Op::Reload`].
    Reloaded(Reloaded),
    /// [`Op::Cluster`].
    Cluster(Cluster),
    /// [`Op::Redirects`].
    Redirects(Redirects),
}

/// Who sent an operation, as `tack`'s log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The local management socket (`tackctl`).
    Socket,
    /// The HTTP listener (`management.http`).
    Http,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Socket => "tackctl",
            Origin::Http => "http",
        })
    }
}

/// An operation waiting for the control thread, with where its answer goes.
#[derive(Debug)]
pub struct Request {
    /// The operation.
    pub op: Op,
    /// Who asked.
    pub origin: Origin,
    /// Where the answer goes (the asker may have given up: then it is dropped).
    pub reply: oneshot::Sender<Result<Answer, CtlError>>,
}

impl Request {
    /// Answers the request.
    pub fn answer(self, result: Result<Answer, CtlError>) {
        let _ = self.reply.send(result);
    }
}
