//! The management API's documents: what the requests carry and what the
//! answers hold, as JSON (serde) and as OpenAPI schemas (utoipa). `tack`
//! serialises them; `tackctl` reads them back to print its tables.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A server's administrative state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes new clients.
    Up,
    /// Keeps its connections and sticky clients, takes no new clients.
    Drain,
    /// Out of service: its connections are closed.
    Maint,
    /// Failed: its connections are closed, its sticky clients rebound.
    Down,
}

/// Ports, workers and totals.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// Worker lcores.
    pub workers: u64,
    /// The data ports.
    pub ports: Vec<PortInfo>,
    /// Services configured.
    pub services: u64,
    /// Configuration epochs published since the start (reloads and changes).
    pub epochs: u64,
    /// Packets received by the workers.
    pub rx_packets: u64,
    /// Packets sent by the workers.
    pub tx_packets: u64,
}

/// A data port.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PortInfo {
    /// Its name in the profile.
    pub name: String,
    /// Its DPDK device.
    pub device: String,
    /// Its MAC address.
    pub mac: String,
    /// Its addresses with prefix length.
    pub addresses: Vec<String>,
}

/// A service with its servers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Service {
    /// Name.
    pub name: String,
    /// Virtual address.
    #[schema(value_type = String)]
    pub vip: IpAddr,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Port (none: every port).
    pub port: Option<u16>,
    /// Forwarding mode (`nat`, `fullnat`, `dsr`, `tunnel`, `redirect`).
    pub mode: String,
    /// Scheduler (`rr`, `wrr`, `lc`, `wlc`, `sh`, `maglev`, `hrw`, `failover`).
    pub scheduler: String,
    /// Source persistence, if on.
    pub persistence: Option<Persistence>,
    /// Connections opened since the start.
    pub connections: u64,
    /// New clients dropped because no server was available.
    pub no_server: u64,
    /// Client packets of its connections.
    pub packets_in: u64,
    /// Their bytes (IP length).
    pub bytes_in: u64,
    /// Server packets of its connections (NAT and full NAT).
    pub packets_out: u64,
    /// Their bytes (IP length).
    pub bytes_out: u64,
    /// Real servers, in pool order.
    pub servers: Vec<Server>,
}

/// A service's source persistence.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Persistence {
    /// Minutes a key stays bound after its last connection.
    pub timeout_minutes: u32,
    /// The client key: `address`, `prefix /N` or `natural class`.
    pub key: String,
    /// Natural class limited to these classful networks.
    pub networks: Vec<String>,
}

/// A real server.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Server {
    /// Name (default: the address, or address:port).
    pub name: String,
    /// Address.
    #[schema(value_type = String)]
    pub address: IpAddr,
    /// Destination port (none: the client's).
    pub port: Option<u16>,
    /// Weight.
    pub weight: u16,
    /// Administrative state.
    pub state: AdminState,
    /// Open connections on every worker.
    pub active_connections: u64,
    /// Connections opened to it since the start (or since it was added).
    pub connections: u64,
    /// Client packets sent its way.
    pub packets: u64,
    /// Their bytes (IP length).
    pub bytes: u64,
    /// Its health check's verdict (`up` or `down`); none without a check.
    pub health: Option<String>,
    /// TCP connections that expired before it answered their SYN (NAT and
    /// full NAT): passive health.
    pub syn_unanswered: u64,
    /// Resets it sent (NAT and full NAT): passive health.
    pub resets: u64,
}

/// A new real server (`POST /services/{service}/servers`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServer {
    /// Address.
    #[schema(value_type = String)]
    pub address: IpAddr,
    /// Destination port (omit to keep the client's).
    #[serde(default)]
    pub port: Option<u16>,
    /// Name, unique in the service (default: the address, or address:port).
    #[serde(default)]
    pub name: Option<String>,
    /// Weight, 0..=65535 (default 1).
    #[serde(default)]
    pub weight: Option<u16>,
    /// State (default `up`).
    #[serde(default)]
    pub state: Option<AdminState>,
}

/// A change of a server's weight and/or state (`PATCH`); both are applied
/// in one configuration epoch, or neither.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerChange {
    /// New weight, 0..=65535.
    #[serde(default)]
    pub weight: Option<u16>,
    /// New state.
    #[serde(default)]
    pub state: Option<AdminState>,
}

/// LocalDirector's `sticky <vid> <minutes> [nc-subnet]` (`PUT /services/{service}/sticky`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StickySetting {
    /// Minutes a client's natural-class network stays with its server after
    /// its last connection; 0 turns persistence off.
    pub minutes: u32,
    /// Only this natural class: a classful network (`172.16.0.0`) or a
    /// first octet (`172`: every class A or B network starting with it).
    #[serde(default)]
    pub network: Option<String>,
}

/// Which connections: any combination of service, server (with a service)
/// and client (an address or a network `ADDR/LEN`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnSelect {
    /// Service name.
    #[serde(default)]
    pub service: Option<String>,
    /// Server name or address (needs `service`).
    #[serde(default)]
    pub server: Option<String>,
    /// Client address or network (`172.16.0.0/16`).
    #[serde(default)]
    pub client: Option<String>,
}

/// `GET /connections`: how many to list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListLimit {
    /// Most connections to list per worker (default 20, at most 100000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A connection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Connection {
    /// The worker that holds it.
    pub worker: u64,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Client address.
    #[schema(value_type = String)]
    pub client: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// VIP.
    #[schema(value_type = String)]
    pub vip: IpAddr,
    /// VIP port.
    pub vip_port: u16,
    /// Service name.
    pub service: String,
    /// Server name (none: removed by a change since).
    pub server: Option<String>,
    /// Server address.
    #[schema(value_type = Option<String>)]
    pub server_address: Option<IpAddr>,
    /// TCP state (`SynSent`, `Established`, ...; UDP connections show `Established`).
    pub state: String,
}

/// Connections: how many match, and the first ones.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    /// Connections matching the selection on every worker.
    pub matching: u64,
    /// Entries in the connection tables (every connection, both families).
    pub table_entries: u64,
    /// The first `limit` matching connections of each worker.
    pub connections: Vec<Connection>,
}

/// How many connections match.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionCount {
    /// Connections matching the selection on every worker.
    pub connections: u64,
}

/// `GET /sticky` and `DELETE /sticky`: a service, a client key (`172.16.0.0/16`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StickySelect {
    /// Service name.
    #[serde(default)]
    pub service: Option<String>,
    /// Client key as listed (`ADDR/LEN`; needs `service`).
    #[serde(default)]
    pub key: Option<String>,
}

/// A sticky binding, merged over the workers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StickyBinding {
    /// Service name.
    pub service: String,
    /// Client key (`ADDR/LEN`).
    pub key: String,
    /// Bound server (none: removed, rebound on the next connection).
    pub server: Option<String>,
    /// Open connections using it on every worker.
    pub active: u64,
    /// Workers that know it.
    pub workers: u64,
}

/// A neighbour (ARP / NDP) entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Neighbour {
    /// Port name.
    pub port: String,
    /// Address.
    #[schema(value_type = String)]
    pub address: IpAddr,
    /// MAC address (none while resolving).
    pub mac: Option<String>,
    /// State (`Reachable`, `Stale`, `Permanent`, ...).
    pub state: String,
}

/// Every counter: ports, workers (loop and pipeline counters by name), the control plane.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Counters {
    /// Port counters by port name (`rx_packets`, `tx_bytes`, ...).
    pub ports: BTreeMap<String, BTreeMap<String, u64>>,
    /// Each worker's counters by name.
    pub workers: Vec<BTreeMap<String, u64>>,
    /// The control plane's counters by name.
    pub control: BTreeMap<String, u64>,
}

/// A change applied.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Done {
    /// What was done, in words.
    pub message: String,
}

/// A reload applied.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reloaded {
    /// What was published.
    pub message: String,
    /// The runtime changes (made through the API since the profile was
    /// last read) that the reload reverted, one per line.
    pub reverted: Vec<String>,
}

/// A refusal: why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// The reason, in words.
    pub error: String,
}

/// The cluster this appliance is a node of (`GET /cluster`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Cluster {
    /// This node's id; none when the appliance is not in a cluster.
    pub node: Option<u16>,
    /// Every node of the profile's cluster section.
    pub nodes: Vec<ClusterNode>,
    /// The link's counters (heartbeats, records, bytes, refusals).
    pub counters: BTreeMap<String, u64>,
    /// With `entry: scheduler`: whether this node is the active scheduler
    /// (it answers for the VIPs).
    pub scheduler: Option<bool>,
    /// Dead nodes' full-NAT local addresses this node answers for.
    #[schema(value_type = Vec<String>)]
    pub taken_over: Vec<IpAddr>,
}

/// A cluster node as this one sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterNode {
    /// Its id.
    pub id: u16,
    /// Its address on the cluster link.
    #[schema(value_type = String)]
    pub address: IpAddr,
    /// `live` (takes new flows), `draining` (keeps its own) or `down`.
    pub state: String,
    /// Whether it is this node.
    pub this_node: bool,
}

/// The redirect services and the SYN-proxied ones (`GET /redirects`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Redirects {
    /// Each redirect service.
    pub services: Vec<RedirectService>,
    /// The SYN-proxied services (`name proto/vip:port`).
    pub syn_proxied: Vec<String>,
    /// The responder's and the SYN proxy's counters, summed over the workers.
    pub counters: BTreeMap<String, u64>,
}

/// A redirect service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RedirectService {
    /// Name.
    pub name: String,
    /// `proto/vip:port`.
    pub vip: String,
    /// Paths redirected to the servers' HTTPS URLs.
    pub secure_paths: Vec<String>,
    /// Whether a down server's clients are redirected anew.
    pub backup_to_primary: bool,
    /// Its servers.
    pub servers: Vec<RedirectServer>,
}

/// A redirect service's server.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RedirectServer {
    /// Name.
    pub name: String,
    /// Weight.
    pub weight: u16,
    /// State (`,failing` while its health check fails).
    pub state: String,
    /// Its URL.
    pub url: Option<String>,
    /// Its HTTPS URL.
    pub https_url: Option<String>,
    /// Its directed virtual server's address.
    pub directed: Option<String>,
    /// Its backup.
    pub backup: Option<String>,
}
