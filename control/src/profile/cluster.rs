//! The `cluster:` section: this node's place in a cluster of appliances
//! that share flow state (see [`crate::cluster`]).

use std::net::IpAddr;
use std::path::PathBuf;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tack_dataplane::cluster::NodeId;
use tack_dataplane::pipeline::{ClusterConfig, Entry};

use super::{FieldError, Profile, parse_hex};

/// A cluster member.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterNodeSection {
    /// Its id (1..65535), unique in the cluster.
    pub id: u16,
    /// Its address on the cluster link (one of its ports' addresses):
    /// where the other nodes send it packets and messages.
    pub address: IpAddr,
    /// Its full-NAT local addresses (those of its services'
    /// `local_addresses`): the other nodes hold the connections it opens
    /// from them and, when it dies, one of them answers for them.
    #[serde(default)]
    pub local_addresses: Vec<IpAddr>,
}

/// How clients' packets reach the nodes.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EntrySection {
    /// A router spreads them over the nodes (ECMP, routes from BGP).
    #[default]
    Ecmp,
    /// The active scheduler, elected among the nodes (VRRP), owns the VIPs.
    Scheduler,
}

/// The cluster this appliance is a node of.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This node's id.
    pub node: u16,
    /// Every node, this one included.
    pub nodes: Vec<ClusterNodeSection>,
    /// How clients' packets reach the nodes: `ecmp` (default) or
    /// `scheduler`.
    #[serde(default)]
    pub entry: EntrySection,
    /// UDP port of the packets forwarded between nodes (GUE).
    #[serde(default = "gue_port")]
    pub port: u16,
    /// UDP port of the nodes' messages (heartbeats, flow state).
    #[serde(default = "sync_port")]
    pub sync_port: u16,
    /// Time between heartbeats, in milliseconds.
    #[serde(default = "heartbeat_ms")]
    pub heartbeat_ms: u32,
    /// Heartbeats missed before a node is taken for dead.
    #[serde(default = "misses")]
    pub misses: u32,
    /// The nodes' shared secret (at least 16 bytes, in hex), read from
    /// this file: it keys the flow ranking, authenticates the messages
    /// and is the SYN cookies' key.
    pub key_file: PathBuf,
    /// A program run with `draining` or `active` as its argument when this
    /// node starts or stops draining (`tackctl cluster drain|activate`):
    /// e.g. one that has the node's BGP daemon withdraw or announce the
    /// VIPs.
    #[serde(default)]
    pub notify: Option<PathBuf>,
}

fn gue_port() -> u16 {
    6080
}
fn sync_port() -> u16 {
    6081
}
fn heartbeat_ms() -> u32 {
    100
}
fn misses() -> u32 {
    3
}

impl ClusterSection {
    /// This node's address.
    pub fn own_address(&self) -> Option<IpAddr> {
        self.nodes
            .iter()
            .find(|n| n.id == self.node)
            .map(|n| n.address)
    }

    /// The other nodes' full-NAT local addresses.
    pub fn peer_local_addresses(&self) -> Vec<IpAddr> {
        self.nodes
            .iter()
            .filter(|n| n.id != self.node)
            .flat_map(|n| n.local_addresses.iter().copied())
            .collect()
    }

    /// Reads the shared secret from `key_file`.
    pub fn read_key(&self) -> Result<Vec<u8>, FieldError> {
        let field = "cluster.key_file";
        let text = std::fs::read_to_string(&self.key_file)
            .map_err(|e| FieldError::new(field, format!("{}: {e}", self.key_file.display())))?;
        let key = parse_hex(text.trim()).ok_or_else(|| {
            FieldError::new(field, format!("{}: not hex", self.key_file.display()))
        })?;
        if key.len() < 16 {
            return Err(FieldError::new(
                field,
                format!("{}: at least 16 bytes are needed", self.key_file.display()),
            ));
        }
        Ok(key)
    }
}

/// Keys derived from the cluster's shared secret, one per use.
#[derive(Debug, Clone)]
pub struct ClusterKeys {
    /// Authenticates the nodes' messages.
    pub messages: Vec<u8>,
    /// Keys the flow ranking.
    pub ranking: u64,
    /// The SYN cookies' master key (redirect services answer SYNs the
    /// same way on every node).
    pub syn_cookies: [u8; 16],
}

impl ClusterKeys {
    /// The keys from secret `s`.
    pub fn derive(s: &[u8]) -> ClusterKeys {
        let prf = |label: &str| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(s).expect("any key length");
            m.update(label.as_bytes());
            m.finalize().into_bytes()
        };
        let r = prf("tack ranking");
        let c = prf("tack syn cookies");
        let mut syn_cookies = [0u8; 16];
        syn_cookies.copy_from_slice(&c[..16]);
        ClusterKeys {
            messages: prf("tack messages").to_vec(),
            ranking: u64::from_le_bytes(r[..8].try_into().expect("8 bytes")),
            syn_cookies,
        }
    }
}

/// The pipeline's view of the cluster section.
pub fn pipeline_cluster(c: &ClusterSection) -> Result<(ClusterConfig, ClusterKeys), FieldError> {
    let keys = ClusterKeys::derive(&c.read_key()?);
    let cfg = ClusterConfig {
        node: NodeId(c.node),
        nodes: c.nodes.iter().map(|n| (NodeId(n.id), n.address)).collect(),
        key: keys.ranking,
        port: c.port,
        sync_port: c.sync_port,
        entry: match c.entry {
            EntrySection::Ecmp => Entry::Ecmp,
            EntrySection::Scheduler => Entry::Scheduler,
        },
    };
    Ok((cfg, keys))
}

impl Profile {
    /// Checks the cluster section against the ports.
    pub(super) fn validate_cluster(&self) -> Result<(), FieldError> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let err = |f: String, m: String| Err(FieldError::new(f, m));
        let mut ids = std::collections::HashSet::new();
        let mut addrs = std::collections::HashSet::new();
        for (i, n) in c.nodes.iter().enumerate() {
            if n.id == 0 {
                return err(format!("cluster.nodes[{i}].id"), "ids are 1..65535".into());
            }
            if !ids.insert(n.id) {
                return err(
                    format!("cluster.nodes[{i}].id"),
                    format!("node {} is listed twice", n.id),
                );
            }
            if !n.address.is_ipv4() {
                return err(
                    format!("cluster.nodes[{i}].address"),
                    "cluster links are IPv4 (the encapsulation's UDP checksum is left out)".into(),
                );
            }
            if !addrs.insert(n.address) {
                return err(
                    format!("cluster.nodes[{i}].address"),
                    format!("{} is listed twice", n.address),
                );
            }
        }
        let mut locals = std::collections::HashMap::new();
        for (i, n) in c.nodes.iter().enumerate() {
            for (k, a) in n.local_addresses.iter().enumerate() {
                if let Some(other) = locals.insert(*a, n.id) {
                    return err(
                        format!("cluster.nodes[{i}].local_addresses[{k}]"),
                        format!("{a} is also node {other}'s: each node has its own"),
                    );
                }
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            for (k, a) in s.local_addresses.iter().enumerate() {
                if locals.get(a) != Some(&c.node) {
                    return err(
                        format!("services[{i}].local_addresses[{k}]"),
                        format!(
                            "in a cluster, list {a} in this node's cluster.nodes[].local_addresses \
                             (the other nodes hold its connections and take it over when it dies)"
                        ),
                    );
                }
            }
        }
        let Some(own) = c.own_address() else {
            return err(
                "cluster.node".into(),
                format!("node {} is not in cluster.nodes", c.node),
            );
        };
        if !self
            .ports
            .iter()
            .any(|p| p.addresses.iter().any(|a| a.addr() == own))
        {
            return err(
                "cluster.nodes".into(),
                format!("this node's address {own} is not an address of one of its ports"),
            );
        }
        if !self.exception.enabled {
            return err(
                "cluster".into(),
                "the nodes' messages go through the exception path: set exception.enabled".into(),
            );
        }
        if c.port == c.sync_port || c.port == 0 || c.sync_port == 0 {
            return err(
                "cluster.sync_port".into(),
                "two different ports, not 0".into(),
            );
        }
        if !(10..=10_000).contains(&c.heartbeat_ms) {
            return err("cluster.heartbeat_ms".into(), "must be 10..10000".into());
        }
        if !(1..=100).contains(&c.misses) {
            return err("cluster.misses".into(), "must be 1..100".into());
        }
        c.read_key().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_use_and_follow_the_secret() {
        let a = ClusterKeys::derive(b"0123456789abcdef");
        let b = ClusterKeys::derive(b"0123456789abcdeg");
        assert_ne!(a.ranking, b.ranking);
        assert_ne!(a.messages, b.messages);
        assert_ne!(a.syn_cookies, b.syn_cookies);
        assert_ne!(&a.messages[..16], &a.syn_cookies[..]);
        let again = ClusterKeys::derive(b"0123456789abcdef");
        assert_eq!(a.ranking, again.ranking);
    }
}
