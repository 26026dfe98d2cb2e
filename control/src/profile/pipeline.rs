//! The pipeline's view of a profile: the [`PipelineConfig`] a profile and
//! the ports' MAC addresses make, at start and at each reload.

use std::sync::Arc;

use tack_dataplane::pipeline::{PipelineConfig, PortSpec, StaticNeighbor};
use tack_dataplane::ratelimit::RateLimit;
use tack_dataplane::sticky::StickyConfig;
use tack_dataplane::wire::EthernetAddress;

use super::{ClusterSection, FieldError, Profile, build_routes, build_services, pipeline_cluster};

/// A random hash seed for a connection or sticky table, so that clients
/// cannot aim their flows at one bucket. (If the kernel cannot give one,
/// which it always can on Linux 3.17 and later, the clock is used.)
fn hash_seed() -> u64 {
    getrandom::u64().unwrap_or_else(|e| {
        log::warn!("no random hash seed ({e}): using the clock");
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x7461_636b, |d| d.as_nanos() as u64)
    })
}

/// The pipeline's view of a profile, with the ports' MAC addresses.
/// Errors name the profile field at fault ([`FieldError`]). The tables get random hash
/// seeds (used when a pipeline is built; a reload keeps the old ones).
pub fn pipeline_config(profile: &Profile, macs: &[[u8; 6]]) -> Result<PipelineConfig, FieldError> {
    let peer_locals = profile
        .cluster
        .as_ref()
        .map_or_else(Vec::new, ClusterSection::peer_local_addresses);
    let services = build_services(&profile.services, &peer_locals)?;
    let routes = build_routes(&profile.routes, &profile.port_prefixes())?;
    let t = &profile.tables;
    let mut cfg = PipelineConfig {
        ports: profile
            .ports
            .iter()
            .zip(macs)
            .map(|(ps, mac)| PortSpec {
                mac: EthernetAddress(*mac),
                addresses: ps
                    .addresses
                    .iter()
                    .map(|n| (n.addr(), n.prefix_len()))
                    .collect(),
                mtu: ps.mtu.unwrap_or(1500),
            })
            .collect(),
        services: Arc::new(services),
        routes,
        ..PipelineConfig::default()
    };
    let timeouts = t.timeouts.to_timeouts();
    for (table, capacity) in [
        (&mut cfg.conn4, t.connections),
        (&mut cfg.conn6, t.connections_v6),
    ] {
        table.capacity = capacity;
        table.timeouts = timeouts;
        table.full_policy = t.when_full.into();
        table.hash_seed = hash_seed();
    }
    cfg.sticky = StickyConfig {
        capacity: t.sticky,
        hash_seed: hash_seed(),
        ..cfg.sticky
    };
    cfg.neigh.capacity = t.neighbours;
    // Gratuitous ARP / unsolicited NA for the addresses and VIPs at start
    // and when a reload adds some.
    cfg.announce = profile.runtime.announce;
    // The exception path: host traffic is handed over only if there is a
    // kernel interface to take it.
    cfg.host_path = profile.exception.enabled;
    cfg.host_rate = RateLimit {
        per_sec: profile.exception.rate,
        burst: profile.exception.burst,
    };
    cfg.static_neighbors = profile
        .neighbours
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let port = profile
                .ports
                .iter()
                .position(|p| p.name == n.port)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| {
                    FieldError::new(
                        format!("neighbours[{i}].port"),
                        format!("no port named `{}`", n.port),
                    )
                })?;
            Ok(StaticNeighbor {
                port,
                addr: n.address,
                mac: EthernetAddress(n.mac.0),
            })
        })
        .collect::<Result<_, FieldError>>()?;
    // The SYN cookies' master key: random at every start, or the
    // cluster's (every node answers a redirect service's SYNs alike).
    let (a, b) = (hash_seed(), hash_seed());
    cfg.syn_cookie_key[..8].copy_from_slice(&a.to_le_bytes());
    cfg.syn_cookie_key[8..].copy_from_slice(&b.to_le_bytes());
    if let Some(c) = &profile.cluster {
        let (cluster, keys) = pipeline_cluster(c)?;
        cfg.syn_cookie_key = keys.syn_cookies;
        cfg.cluster = Some(cluster);
        // The connections this node opens and closes go to their backups.
        cfg.flow_events = true;
    }
    Ok(cfg)
}
