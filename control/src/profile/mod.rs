//! YAML profiles: what `tack run --config PROFILE.yaml` runs.
//!
//! A profile names the EAL settings, the mempool, the ports (a PCI address or
//! a DPDK virtual-device string, with the addresses the appliance owns on
//! them) and the worker lcores, one per (port, receive queue). Unknown keys
//! are refused, and every error names the field and the line at fault.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::yamlpos::LineIndex;

mod check;
mod cluster;
mod error;
mod exception;
mod health;
mod pipeline;
mod services;
pub use check::{LcoreMap, MAX_LCORES, TableCheck, check_pipeline, missing_cpu, parse_lcores};
pub use cluster::{
    ClusterKeys, ClusterNodeSection, ClusterSection, EntrySection, pipeline_cluster,
};
pub use error::{FieldError, MacAddrError, ProfileError};
pub use exception::{ExceptionSection, IFNAME_MAX, ROUTE_METRIC};
pub use health::{CheckKind, HealthSection};
pub use pipeline::pipeline_config;
pub use services::{
    ModeName, PersistenceSection, RouteSection, ServerSection, ServiceSection, TablesSection,
    TimeoutsSection, WhenFull, build_routes, build_services,
};

/// A whole profile.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// DPDK EAL settings.
    #[serde(default)]
    pub eal: EalSection,
    /// Packet buffer pool.
    #[serde(default)]
    pub mempool: MempoolSection,
    /// Worker loop behaviour.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Ports the appliance drives.
    pub ports: Vec<PortSection>,
    /// Worker lcores, one per (port, receive queue).
    pub workers: Vec<WorkerSection>,
    /// Virtual services.
    #[serde(default)]
    pub services: Vec<ServiceSection>,
    /// Static routes (networks on-link on a port need none).
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// Static neighbour entries: next hops and servers whose MAC address
    /// is known, so that no ARP/NDP is needed to reach them.
    #[serde(default)]
    pub neighbours: Vec<NeighbourSection>,
    /// Table sizes and timeouts.
    #[serde(default)]
    pub tables: TablesSection,
    /// The management socket `tackctl` talks to.
    #[serde(default)]
    pub management: ManagementSection,
    /// The exception path to the kernel (TAP interfaces).
    #[serde(default)]
    pub exception: ExceptionSection,
    /// The cluster this appliance is a node of; omit for a single appliance.
    #[serde(default)]
    pub cluster: Option<ClusterSection>,
}

/// Management API settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementSection {
    /// Unix socket path (local only: file permissions guard it).
    pub socket: PathBuf,
    /// The HTTP/JSON management API and `/metrics` on a TCP address (off
    /// when absent).
    pub http: Option<HttpSection>,
}

impl Default for ManagementSection {
    fn default() -> Self {
        ManagementSection {
            socket: PathBuf::from(DEFAULT_SOCKET),
            http: None,
        }
    }
}

/// The management API on TCP.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Address and port (default 127.0.0.1:9180).
    #[serde(default = "default_http_listen")]
    pub listen: std::net::SocketAddr,
    /// A file whose first line is the bearer token every request must
    /// carry (`Authorization: Bearer TOKEN`); required on any address but
    /// loopback.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl HttpSection {
    /// Whether requests must carry the bearer token: on any address but
    /// loopback (or whenever a token file is given).
    pub fn needs_token(&self) -> bool {
        self.token_file.is_some() || !self.listen.ip().is_loopback()
    }
}

fn default_http_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT))
}

/// The management API's TCP port unless the profile says otherwise.
pub const DEFAULT_HTTP_PORT: u16 = 9180;

/// The most neighbour entries a worker holds (more would be ignored).
pub const MAX_NEIGHBOURS: usize = 1 << 20;

/// Where `tack` listens for `tackctl` unless the profile says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/tack/tack.sock";

/// Whether workers hand packets to the worker that owns their flow.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Steering {
    /// On when there is more than one worker (the default): needed when the
    /// device does not spread with Toeplitz RSS under the port's key (af_packet,
    /// af_xdp on veth), and for NAT services, whose replies a NIC's RSS cannot
    /// send to the worker that owns the connection.
    Auto,
    /// Never (a single worker, or full NAT / DSR only on NICs with Toeplitz RSS).
    Off,
}

/// EAL settings; turned into EAL arguments by [`Profile::eal_args`].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EalSection {
    /// The lcore that runs the control thread.
    pub main_lcore: u32,
    /// Raw `--lcores` mapping (e.g. `0@0,1@1,2@1` to run more lcores than
    /// CPUs in a lab). Default: `-l` with the main and worker lcores.
    pub lcores: Option<String>,
    /// Use hugepages. `false` passes `--no-huge --no-shconf` (labs, tests).
    pub hugepages: bool,
    /// Memory to reserve in MiB (`-m`); `None` lets EAL decide.
    pub memory_mb: Option<u32>,
    /// EAL log level (`--log-level`): error, warning, notice, info, debug.
    pub log_level: String,
    /// Extra EAL arguments appended verbatim.
    pub args: Vec<String>,
}

impl Default for EalSection {
    fn default() -> Self {
        EalSection {
            main_lcore: 0,
            lcores: None,
            hugepages: true,
            memory_mb: None,
            log_level: "warning".into(),
            args: Vec::new(),
        }
    }
}

/// The packet buffer pool (one per NUMA socket in use).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolSection {
    /// Number of mbufs.
    pub mbufs: u32,
    /// Per-lcore cache.
    pub cache: u32,
    /// Data room per mbuf in bytes, headroom included.
    pub data_room: u16,
}

impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection {
            mbufs: 16383,
            cache: 256,
            data_room: 2176,
        }
    }
}

/// What a worker does when its queues are idle.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum IdlePolicy {
    /// Poll without pause (production: dedicated cores, lowest latency).
    BusyPoll,
    /// Sleep a little longer after each empty poll, up to `idle_sleep_max_us`
    /// (labs and tests, where cores are shared).
    Backoff,
}

/// Worker loop settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Idle policy.
    pub idle: IdlePolicy,
    /// Longest sleep of the back-off policy, in microseconds.
    pub idle_sleep_max_us: u32,
    /// Receive burst size.
    pub burst: u16,
    /// How often workers publish their counters, in milliseconds.
    pub stats_interval_ms: u32,
    /// Software flow steering between workers.
    pub steering: Steering,
    /// Back the tables with transparent huge pages (see
    /// [`crate::hugepages`]).
    pub huge_pages: bool,
    /// Announce the appliance's addresses (gratuitous ARP, unsolicited
    /// neighbour advertisements) at start and when a reload adds some.
    pub announce: bool,
    /// Where the full-NAT tuples in use are saved when `tack` stops, for
    /// the next instance to keep out of its port choice while servers may
    /// hold them in TIME_WAIT ([`crate::quarantine`]). `None`: beside the
    /// management socket, with the extension `.fnat`.
    pub fnat_quarantine: Option<PathBuf>,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        RuntimeSection {
            idle: IdlePolicy::BusyPoll,
            idle_sleep_max_us: 200,
            burst: 32,
            stats_interval_ms: 100,
            steering: Steering::Auto,
            huge_pages: true,
            announce: true,
            fnat_quarantine: None,
        }
    }
}

/// One port.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortSection {
    /// The name other sections use for this port.
    pub name: String,
    /// A PCI address (`0000:03:00.0`) or a DPDK virtual device string
    /// (`net_af_packet0,iface=veth0`, `net_ring0`, `net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`).
    pub device: String,
    /// Addresses the appliance owns on this port (answers ARP/NDP and ping), with prefix length.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Receive queues; each needs a worker.
    #[serde(default = "one")]
    pub rx_queues: u16,
    /// Receive descriptors per queue.
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    /// Transmit descriptors per queue.
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
    /// MTU; `None` keeps the device's.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Receive all frames.
    #[serde(default = "yes")]
    pub promiscuous: bool,
    /// RSS Toeplitz key as hex (e.g. 40 bytes = 80 hex digits); `None` keeps the device's.
    #[serde(default)]
    pub rss_key: Option<String>,
    /// MAC address to set on the port; `None` keeps the device's.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Name of the port's kernel interface on the exception path
    /// (default `tack-` and the port's name, cut to 15 characters).
    #[serde(default)]
    pub tap: Option<String>,
}

/// A static neighbour entry: `{ port: lan, address: 10.0.0.11, mac: 02:00:00:00:00:0b }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NeighbourSection {
    /// The port it is on, by name.
    pub port: String,
    /// Its IP address, on-link on the port.
    pub address: std::net::IpAddr,
    /// Its MAC address.
    pub mac: MacAddr,
}

/// A MAC address written `02:00:00:00:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl std::str::FromStr for MacAddr {
    type Err = MacAddrError;
    fn from_str(s: &str) -> Result<MacAddr, MacAddrError> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let bad = || MacAddrError::Syntax(s.to_string());
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut m = [0u8; 6];
        for (b, p) in m.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if m[0] & 1 != 0 {
            return Err(MacAddrError::Multicast(s.to_string()));
        }
        Ok(MacAddr(m))
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, so that the error is raised at the value (and names its field and line).
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = MacAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a MAC address like 02:00:00:00:00:01")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<MacAddr, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

fn one() -> u16 {
    1
}
fn default_desc() -> u16 {
    1024
}
fn yes() -> bool {
    true
}

/// One worker: an lcore polling one receive queue of one port.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// The lcore it runs on.
    pub lcore: u32,
    /// The port it receives from.
    pub port: String,
    /// The receive queue.
    #[serde(default)]
    pub queue: u16,
}

/// The largest profile file read (16 MiB): a profile is a few kilobytes,
/// and `--config /dev/zero` must not fill the memory.
pub const MAX_PROFILE_BYTES: u64 = 16 << 20;

/// Why a profile file could not be read.
enum ReadError {
    /// More than [`MAX_PROFILE_BYTES`].
    TooBig,
    /// The system's reason.
    Io(std::io::Error),
}

/// Reads at most [`MAX_PROFILE_BYTES`] of UTF-8 text from `path`.
fn read_bounded(path: &Path) -> Result<String, ReadError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(ReadError::TooBig);
    }
    String::from_utf8(bytes).map_err(|e| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ))
    })
}

/// Whether a device string names a PCI device (domain:bus:dev.fn or bus:dev.fn).
pub fn is_pci_address(device: &str) -> bool {
    let d = device.split(',').next().unwrap_or("");
    let parts: Vec<&str> = d.split(':').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    let devfn = |s: &str| {
        s.split_once('.').is_some_and(|(dev, f)| {
            hex(dev, 2) && f.len() == 1 && f.chars().all(|c| c.is_ascii_digit())
        })
    };
    match parts.as_slice() {
        [dom, bus, df] => hex(dom, 4) && hex(bus, 2) && devfn(df),
        [bus, df] => hex(bus, 2) && devfn(df),
        _ => false,
    }
}

/// Parses a hex string (spaces and colons allowed between bytes).
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !matches!(c, ' ' | ':')).collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

impl Profile {
    /// The file of full-NAT tuples kept across restarts
    /// ([`RuntimeSection::fnat_quarantine`]).
    pub fn fnat_quarantine_path(&self) -> PathBuf {
        self.runtime
            .fnat_quarantine
            .clone()
            .unwrap_or_else(|| self.management.socket.with_extension("fnat"))
    }

    /// The file where the control thread checkpoints the workers'
    /// full-NAT port walks every second, for a restart after a crash: the
    /// quarantine file's name with `.walk` added.
    pub fn fnat_walk_path(&self) -> PathBuf {
        let mut p = self.fnat_quarantine_path().into_os_string();
        p.push(".walk");
        PathBuf::from(p)
    }

    /// Reads and checks a profile file, as `tack check` and `tack run` do:
    /// [`Profile::parse`].
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        Profile::load_with(path, TableCheck::Build)
    }

    /// Reads and checks a profile file of at most [`MAX_PROFILE_BYTES`],
    /// building worker 0's tables or not ([`TableCheck`]).
    pub fn load_with(path: &Path, tables: TableCheck) -> Result<Profile, ProfileError> {
        let file = path.display().to_string();
        let unreadable = |message: String| ProfileError {
            file: Some(file.clone()),
            field: String::new(),
            line: None,
            message,
        };
        let src = read_bounded(path).map_err(|e| match e {
            ReadError::TooBig => unreadable(format!(
                "the profile is larger than {} MiB; is this the right file?",
                MAX_PROFILE_BYTES >> 20
            )),
            ReadError::Io(e) => unreadable(format!("cannot read profile: {e}")),
        })?;
        Profile::parse_with(&src, tables).map_err(|mut e| {
            e.file = Some(file.clone());
            e
        })
    }

    /// Parses and checks a profile from YAML text: everything `tack run`
    /// checks before it starts DPDK, worker 0's tables built at their sizes
    /// ([`TableCheck::Build`]).
    pub fn parse(src: &str) -> Result<Profile, ProfileError> {
        Profile::parse_with(src, TableCheck::Build)
    }

    /// Parses and checks a profile from YAML text: its fields, then the
    /// pipeline it makes ([`check_pipeline`]). Errors name the field and
    /// its line.
    pub fn parse_with(src: &str, tables: TableCheck) -> Result<Profile, ProfileError> {
        let index = LineIndex::new(src);
        let profile: Profile = serde_yaml_ng::from_str(src).map_err(|e| {
            // serde_yaml_ng's message reads "field.path: problem at line L column C".
            let text = e.to_string();
            let text = match text.rfind(" at line ") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            let (field, message) = match text.split_once(": ") {
                Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
                _ => (String::new(), text),
            };
            // A repeated key is reported at the mapping that holds it: name
            // the key and the line where it comes again.
            let repeated = message
                .strip_prefix("duplicate field `")
                .and_then(|m| m.strip_suffix('`'))
                .map(|key| {
                    if field.is_empty() {
                        key.to_string()
                    } else {
                        format!("{field}.{key}")
                    }
                });
            match repeated
                .as_deref()
                .and_then(|k| Some((k, index.repeated_line(k)?)))
            {
                Some((key, line)) => ProfileError {
                    file: None,
                    field: key.to_string(),
                    line: Some(line),
                    message: match index.line(key) {
                        Some(first) => format!("given twice (first at line {first})"),
                        None => "given twice".to_string(),
                    },
                },
                None => ProfileError {
                    file: None,
                    field,
                    line: e.location().map(|l| l.line()),
                    message,
                },
            }
        })?;
        let at_line = |FieldError { field, message }| ProfileError {
            file: None,
            line: index.line(&field),
            field,
            message,
        };
        profile.validate().map_err(at_line)?;
        check_pipeline(&profile, tables).map_err(at_line)?;
        Ok(profile)
    }

    /// Cross-field checks. The error names the offending field path and the problem.
    pub fn validate(&self) -> Result<(), FieldError> {
        let err = |f: String, m: String| Err(FieldError::new(f, m));
        if self.ports.is_empty() {
            return err("ports".into(), "at least one port is needed".into());
        }
        if self.workers.is_empty() {
            return err("workers".into(), "at least one worker is needed".into());
        }
        if let Some(h) = &self.management.http
            && h.needs_token()
            && h.token_file.is_none()
        {
            return err(
                "management.http.token_file".into(),
                format!("needed: {} is not a loopback address", h.listen),
            );
        }
        if !matches!(
            self.eal.log_level.as_str(),
            "error" | "warning" | "notice" | "info" | "debug"
        ) {
            return err(
                "eal.log_level".into(),
                format!(
                    "`{}` is not one of error, warning, notice, info, debug",
                    self.eal.log_level
                ),
            );
        }
        if self.eal.main_lcore >= MAX_LCORES {
            return err(
                "eal.main_lcore".into(),
                format!("lcores are 0..{}", MAX_LCORES - 1),
            );
        }
        if let Some(map) = &self.eal.lcores {
            let parsed = parse_lcores(map)
                .map_err(|m| FieldError::new("eal.lcores", format!("`{map}`: {m}")))?;
            if !parsed.lcores.contains(&self.eal.main_lcore) {
                return err(
                    "eal.lcores".into(),
                    format!("the main lcore {} is not in the map", self.eal.main_lcore),
                );
            }
            if let Some((i, w)) = self
                .workers
                .iter()
                .enumerate()
                .find(|(_, w)| !parsed.lcores.contains(&w.lcore))
            {
                return err(
                    format!("workers[{i}].lcore"),
                    format!("lcore {} is not in eal.lcores `{map}`", w.lcore),
                );
            }
        }
        // The pool's mbufs alone (data room and the 128-byte mbuf header)
        // must fit in the memory EAL is given.
        let pool_bytes = u64::from(self.mempool.mbufs) * (u64::from(self.mempool.data_room) + 128);
        if let Some(mb) = self.eal.memory_mb
            && pool_bytes > u64::from(mb) << 20
        {
            return err(
                "eal.memory_mb".into(),
                format!(
                    "{mb} MiB cannot hold the mempool ({} mbufs of {} bytes need more than {} MiB; omit memory_mb to have it sized)",
                    self.mempool.mbufs,
                    self.mempool.data_room,
                    pool_bytes >> 20
                ),
            );
        }
        if self.mempool.mbufs < 256 {
            return err(
                "mempool.mbufs".into(),
                "at least 256 mbufs are needed".into(),
            );
        }
        if self.mempool.cache > 512
            || (self.mempool.cache as u64) * 3 > (self.mempool.mbufs as u64) * 2
        {
            return err(
                "mempool.cache".into(),
                "the cache must be at most 512 and at most 2/3 of mbufs".into(),
            );
        }
        if self.mempool.data_room < 1024 {
            return err(
                "mempool.data_room".into(),
                "the data room must be at least 1024 bytes".into(),
            );
        }
        if self.runtime.burst == 0 || self.runtime.burst > 256 {
            return err("runtime.burst".into(), "the burst must be 1..256".into());
        }
        if self.runtime.stats_interval_ms == 0 {
            return err(
                "runtime.stats_interval_ms".into(),
                "must be at least 1".into(),
            );
        }
        if !(1..=MAX_NEIGHBOURS).contains(&self.tables.neighbours) {
            return err(
                "tables.neighbours".into(),
                format!("must be 1..{MAX_NEIGHBOURS}"),
            );
        }
        let mut names = HashSet::new();
        let mut devices = HashSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let f = |k: &str| format!("ports[{i}].{k}");
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return err(
                    f("name"),
                    format!("`{}` is not a name (letters, digits, - and _)", p.name),
                );
            }
            if !names.insert(p.name.as_str()) {
                return err(f("name"), format!("port `{}` is defined twice", p.name));
            }
            let dev = p.device.split(',').next().unwrap_or("").trim();
            if dev.is_empty() {
                return err(f("device"), "empty device".into());
            }
            if !is_pci_address(&p.device) && !dev.starts_with("net_") {
                return err(
                    f("device"),
                    format!(
                        "`{dev}` is neither a PCI address (0000:03:00.0) nor a virtual device (net_...)"
                    ),
                );
            }
            if !devices.insert(dev) {
                return err(f("device"), format!("device `{dev}` is used by two ports"));
            }
            if p.rx_queues == 0 {
                return err(
                    f("rx_queues"),
                    "at least one receive queue is needed".into(),
                );
            }
            if !(64..=32768).contains(&p.rx_desc) {
                return err(f("rx_desc"), "must be 64..32768".into());
            }
            if !(64..=32768).contains(&p.tx_desc) {
                return err(f("tx_desc"), "must be 64..32768".into());
            }
            if let Some(mtu) = p.mtu
                && !(68..=9600).contains(&mtu)
            {
                return err(f("mtu"), "must be 68..9600".into());
            }
            if let Some(k) = &p.rss_key {
                match parse_hex(k) {
                    Some(b) if b.len() >= 40 => {}
                    Some(b) => {
                        return err(
                            f("rss_key"),
                            format!("{} bytes; a Toeplitz key needs at least 40", b.len()),
                        );
                    }
                    None => return err(f("rss_key"), "not a hex string".into()),
                }
            }
            let mut addrs = HashSet::new();
            for (j, a) in p.addresses.iter().enumerate() {
                if !addrs.insert(a.addr()) {
                    return err(
                        format!("ports[{i}].addresses[{j}]"),
                        format!("{} is listed twice", a.addr()),
                    );
                }
                if a.addr().is_multicast() || a.addr().is_unspecified() {
                    return err(
                        format!("ports[{i}].addresses[{j}]"),
                        format!("{} cannot be a port address", a.addr()),
                    );
                }
            }
        }
        self.validate_neighbours()?;
        self.validate_exception()?;
        self.validate_cluster()?;
        let mut lcores = HashSet::new();
        let mut queues = BTreeSet::new();
        for (i, w) in self.workers.iter().enumerate() {
            let f = |k: &str| format!("workers[{i}].{k}");
            if w.lcore == self.eal.main_lcore {
                return err(
                    f("lcore"),
                    format!("lcore {} is the main lcore (the control thread)", w.lcore),
                );
            }
            if w.lcore >= MAX_LCORES {
                return err(f("lcore"), format!("lcores are 0..{}", MAX_LCORES - 1));
            }
            if !lcores.insert(w.lcore) {
                return err(
                    f("lcore"),
                    format!("lcore {} already runs a worker", w.lcore),
                );
            }
            let Some(port) = self.ports.iter().find(|p| p.name == w.port) else {
                return err(f("port"), format!("no port named `{}`", w.port));
            };
            if w.queue >= port.rx_queues {
                return err(
                    f("queue"),
                    format!(
                        "port `{}` has {} receive queue(s); queue {} does not exist",
                        port.name, port.rx_queues, w.queue
                    ),
                );
            }
            if !queues.insert((w.port.as_str(), w.queue)) {
                return err(
                    f("queue"),
                    format!(
                        "queue {} of port `{}` already has a worker",
                        w.queue, w.port
                    ),
                );
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            for q in 0..p.rx_queues {
                if !queues.contains(&(p.name.as_str(), q)) {
                    return err(
                        format!("ports[{i}].rx_queues"),
                        format!("queue {q} of port `{}` has no worker", p.name),
                    );
                }
            }
        }
        Ok(())
    }

    /// The static neighbours: on a port that exists, on-link there (inside
    /// one of its address prefixes) and none of its own addresses, a
    /// station's MAC, each (port, address) once, and no more than
    /// `tables.neighbours`.
    fn validate_neighbours(&self) -> Result<(), FieldError> {
        let mut seen = HashSet::new();
        for (i, n) in self.neighbours.iter().enumerate() {
            let f = |k: &str| format!("neighbours[{i}].{k}");
            let Some(port) = self.ports.iter().find(|p| p.name == n.port) else {
                return Err(FieldError::new(
                    f("port"),
                    format!("no port named `{}`", n.port),
                ));
            };
            let a = n.address;
            let broadcast = matches!(a, std::net::IpAddr::V4(v4) if v4.is_broadcast());
            if a.is_multicast() || a.is_unspecified() || broadcast {
                return Err(FieldError::new(
                    f("address"),
                    format!("{a} cannot be a neighbour"),
                ));
            }
            if port.addresses.iter().any(|net| net.addr() == a) {
                return Err(FieldError::new(
                    f("address"),
                    format!("{a} is an address of port `{}` itself", port.name),
                ));
            }
            if !port.addresses.iter().any(|net| net.contains(&a)) {
                return Err(FieldError::new(
                    f("address"),
                    format!(
                        "{a} is not on-link on port `{}` (inside none of its address prefixes)",
                        port.name
                    ),
                ));
            }
            if n.mac.0 == [0; 6] {
                return Err(FieldError::new(
                    f("mac"),
                    "00:00:00:00:00:00 is no station's address",
                ));
            }
            if !seen.insert((n.port.as_str(), a)) {
                return Err(FieldError::new(
                    f("address"),
                    format!("{a} on port `{}` is listed twice", n.port),
                ));
            }
        }
        if self.neighbours.len() > self.tables.neighbours {
            return Err(FieldError::new(
                "neighbours",
                format!(
                    "{} static neighbours; the neighbour table (tables.neighbours) holds {}",
                    self.neighbours.len(),
                    self.tables.neighbours
                ),
            ));
        }
        Ok(())
    }

    /// What this machine must have for the profile, checked by `tack run`
    /// before EAL (which would refuse with its whole usage text): the CPUs
    /// the lcores run on. Not part of [`Profile::parse`], so that a profile
    /// checks on any machine.
    pub fn check_machine(&self) -> Result<(), FieldError> {
        match &self.eal.lcores {
            Some(map) => {
                let cpus = parse_lcores(map)
                    .map_err(|m| FieldError::new("eal.lcores", format!("`{map}`: {m}")))?
                    .cpus;
                match missing_cpu(cpus) {
                    Some(cpu) => Err(FieldError::new(
                        "eal.lcores",
                        format!("`{map}`: this machine has no CPU {cpu}"),
                    )),
                    None => Ok(()),
                }
            }
            // Without a map, lcore N runs on CPU N.
            None => {
                let lcores = std::iter::once(("eal.main_lcore".to_string(), self.eal.main_lcore))
                    .chain(
                        self.workers
                            .iter()
                            .enumerate()
                            .map(|(i, w)| (format!("workers[{i}].lcore"), w.lcore)),
                    );
                for (field, lcore) in lcores {
                    if missing_cpu([lcore]).is_some() {
                        return Err(FieldError::new(
                            field,
                            format!(
                                "this machine has no CPU {lcore} (lcore {lcore} runs on it unless eal.lcores maps it elsewhere)"
                            ),
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// The EAL arguments this profile asks for (without the program name).
    pub fn eal_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        match &self.eal.lcores {
            Some(map) => a.push(format!("--lcores={map}")),
            None => {
                let mut ids: Vec<u32> = self.workers.iter().map(|w| w.lcore).collect();
                ids.push(self.eal.main_lcore);
                ids.sort_unstable();
                let list: Vec<String> = ids.iter().map(u32::to_string).collect();
                a.push("-l".into());
                a.push(list.join(","));
            }
        }
        a.push(format!("--main-lcore={}", self.eal.main_lcore));
        if !self.eal.hugepages {
            a.push("--no-huge".into());
            a.push("--no-shconf".into());
        }
        if let Some(prefix) = self.eal_file_prefix() {
            // Separate processes (labs, tests) must not share runtime files.
            a.push(format!("--file-prefix={prefix}"));
        }
        // Without hugepages EAL reserves only 64 MiB unless told; size it for the pool.
        if let Some(m) = self
            .eal
            .memory_mb
            .or((!self.eal.hugepages).then(|| self.default_memory_mb()))
        {
            a.push("-m".into());
            a.push(m.to_string());
        }
        let pci: Vec<&PortSection> = self
            .ports
            .iter()
            .filter(|p| is_pci_address(&p.device))
            .collect();
        if pci.is_empty() {
            a.push("--no-pci".into());
        }
        for p in pci {
            a.push("-a".into());
            a.push(p.device.clone());
        }
        a.push("--no-telemetry".into());
        a.push(format!("--log-level=lib.eal:{}", self.eal.log_level));
        a.push(format!("--log-level=*:{}", self.eal.log_level));
        a.extend(self.eal.args.iter().cloned());
        a
    }

    /// The EAL file prefix of this process, `tack<PID>`, when it has one of
    /// its own: without hugepages, unless `eal.args` sets one.
    pub fn eal_file_prefix(&self) -> Option<String> {
        let own =
            !self.eal.hugepages && !self.eal.args.iter().any(|a| a.starts_with("--file-prefix"));
        own.then(|| format!("tack{}", std::process::id()))
    }

    /// Where EAL may have made the runtime directory of this process's own
    /// file prefix ([`Profile::eal_file_prefix`]): `/var/run/dpdk/PREFIX` for
    /// root, `$XDG_RUNTIME_DIR/dpdk/PREFIX` or `/tmp/dpdk/PREFIX` for others.
    pub fn eal_runtime_dirs(&self) -> Vec<PathBuf> {
        let Some(prefix) = self.eal_file_prefix() else {
            return Vec::new();
        };
        let user = std::env::var_os("XDG_RUNTIME_DIR").map_or(PathBuf::from("/tmp"), PathBuf::from);
        [PathBuf::from("/var/run"), user]
            .into_iter()
            .map(|d| d.join("dpdk").join(&prefix))
            .collect()
    }

    /// Memory (MiB) for one mempool per NUMA socket plus rings and tables in
    /// DPDK memory, when the profile does not say.
    pub fn default_memory_mb(&self) -> u32 {
        // Each mbuf takes its data room plus the mbuf header and mempool overhead.
        let pool = self.mempool.mbufs as u64 * (self.mempool.data_room as u64 + 256);
        (pool / (1 << 20)) as u32 + 128
    }

    /// Each port's address prefixes (its on-link networks), by port index.
    pub fn port_prefixes(&self) -> Vec<Vec<IpNet>> {
        self.ports.iter().map(|p| p.addresses.clone()).collect()
    }

    /// The workers' lcores in profile order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.lcore).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
eal:
  hugepages: false
  memory_mb: 128
ports:
  - name: lan
    device: net_af_packet0,iface=veth0
    addresses: [10.0.0.1/24, fd00::1/64]
workers:
  - lcore: 1
    port: lan
";

    #[test]
    fn a_good_profile_loads() {
        let p = Profile::parse(GOOD).unwrap();
        assert_eq!(p.ports[0].addresses.len(), 2);
        assert_eq!(p.workers[0].queue, 0);
        let args = p.eal_args();
        assert!(args.contains(&"--no-huge".to_string()));
        assert!(args.contains(&"--no-pci".to_string()));
        assert!(args.windows(2).any(|w| w == ["-l", "0,1"]));
    }

    fn error_of(src: &str) -> ProfileError {
        Profile::parse(src).expect_err("profile must be refused")
    }

    /// A cluster node's profile with a full-NAT service, its local
    /// addresses `own` in the service and `listed` in its cluster entry.
    fn cluster_node(own: &str, listed: &str, other: &str) -> String {
        format!(
            "{GOOD}exception:\n  enabled: true\n\
             cluster:\n  node: 1\n  entry: scheduler\n  key_file: /nonexistent\n  nodes:\n\
             \x20   - {{ id: 1, address: 10.0.0.1, local_addresses: [{listed}] }}\n\
             \x20   - {{ id: 2, address: 10.0.0.2, local_addresses: [{other}] }}\n\
             services:\n  - name: f\n    vip: 10.100.0.1\n    port: 80\n    mode: fullnat\n\
             \x20   local_addresses: [{own}]\n    servers: [{{ name: s, address: 10.0.0.9 }}]\n"
        )
    }

    #[test]
    fn cluster_local_addresses_are_each_nodes_own() {
        // Given twice.
        let e = error_of(&cluster_node("10.0.0.31", "10.0.0.31", "10.0.0.31"));
        assert_eq!(e.field, "cluster.nodes[1].local_addresses[0]");
        assert!(e.message.contains("also node 1's"), "{e}");
        // A service's local address must be this node's.
        let e = error_of(&cluster_node("10.0.0.32", "10.0.0.31", "10.0.0.32"));
        assert_eq!(e.field, "services[0].local_addresses[0]");
        assert!(e.message.contains("cluster.nodes[].local_addresses"), "{e}");
        // Right: only the key file is missing.
        let e = error_of(&cluster_node("10.0.0.31", "10.0.0.31", "10.0.0.32"));
        assert_eq!(e.field, "cluster.key_file");
        let e = error_of(
            &cluster_node("10.0.0.31", "10.0.0.31", "10.0.0.32")
                .replace("entry: scheduler", "entry: vrrp"),
        );
        assert!(e.message.contains("unknown variant `vrrp`"), "{e}");
    }

    #[test]
    fn unknown_key_names_field_and_line() {
        let e = error_of(&GOOD.replace("    addresses:", "    adresses:"));
        assert_eq!(e.field, "ports[0]");
        assert!(e.message.contains("unknown field `adresses`"), "{e}");
        assert_eq!(e.line, Some(7));
    }

    #[test]
    fn bad_value_names_field_and_line() {
        let e = error_of(&GOOD.replace("memory_mb: 128", "memory_mb: lots"));
        assert_eq!(e.field, "eal.memory_mb");
        assert_eq!(e.line, Some(3));
        let e = error_of(&GOOD.replace("10.0.0.1/24", "10.0.0.300/24"));
        assert_eq!(e.field, "ports[0].addresses[0]");
        assert_eq!(e.line, Some(7));
    }

    #[test]
    fn cross_field_errors_name_field_and_line() {
        let e = error_of(&GOOD.replace("    port: lan", "    port: wan"));
        assert_eq!((e.field.as_str(), e.line), ("workers[0].port", Some(10)));
        assert!(e.message.contains("no port named `wan`"));
        let e = error_of(&GOOD.replace("  - lcore: 1", "  - lcore: 0"));
        assert_eq!((e.field.as_str(), e.line), ("workers[0].lcore", Some(9)));
        let e = error_of(&GOOD.replace("net_af_packet0,iface=veth0", "eth0"));
        assert_eq!((e.field.as_str(), e.line), ("ports[0].device", Some(6)));
        let e = error_of(&GOOD.replace("    addresses:", "    rx_queues: 2\n    addresses:"));
        assert_eq!(e.field, "ports[0].rx_queues");
        assert!(
            e.message.contains("queue 1 of port `lan` has no worker"),
            "{e}"
        );
    }

    #[test]
    fn display_is_one_line() {
        let mut e = error_of(&GOOD.replace("    port: lan", "    port: wan"));
        e.file = Some("x.yaml".into());
        let s = e.to_string();
        assert_eq!(s, "x.yaml:10: workers[0].port: no port named `wan`");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn mac_addresses() {
        assert_eq!(
            "02:00:00:0a:0b:ff".parse::<MacAddr>().unwrap().0,
            [2, 0, 0, 10, 11, 255]
        );
        assert!("02:00:00:0a:0b".parse::<MacAddr>().is_err());
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().is_err());
        let e = error_of(&GOOD.replace(
            "    addresses:",
            "    mac: 02:zz:00:00:00:01\n    addresses:",
        ));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("ports[0].mac", Some(7)),
            "{e:?}"
        );
    }

    #[test]
    fn static_neighbours_reach_the_pipeline_config() {
        let src = format!(
            "{GOOD}neighbours:\n  - {{ port: lan, address: 10.0.0.9, mac: 02:00:00:00:00:09 }}\n"
        );
        let p = Profile::parse(&src).unwrap();
        let cfg = pipeline_config(&p, &[[2, 0, 0, 0, 0, 1]]).unwrap();
        assert_eq!(
            cfg.static_neighbors,
            vec![tack_dataplane::pipeline::StaticNeighbor {
                port: 0,
                addr: "10.0.0.9".parse().unwrap(),
                mac: tack_dataplane::wire::EthernetAddress([2, 0, 0, 0, 0, 9]),
            }]
        );
        let e = error_of(&src.replace("mac: 02:00:00:00:00:09", "mac: 00:00:00:00:00:00"));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("neighbours[0].mac", Some(12)),
            "{e}"
        );
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:03:00.0"));
        assert!(is_pci_address("03:00.1"));
        assert!(!is_pci_address("net_ring0"));
        assert!(!is_pci_address("0000:03:00"));
    }
}
