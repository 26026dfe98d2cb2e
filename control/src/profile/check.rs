//! The checks of a profile that go through the dataplane, so that `tack
//! check` refuses exactly what `tack run` would: the services and routes
//! compile into a [`PipelineConfig`](tack_dataplane::pipeline::PipelineConfig),
//! and worker 0's [`Pipeline`] is built from it (ports, routes, RSS, tables)
//! as the runtime builds it, without DPDK. Also the EAL `--lcores` map,
//! which EAL would otherwise refuse with its whole usage text.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use tack_dataplane::VecFrame;
use tack_dataplane::pipeline::{ConfigError, Pipeline, WorkerSpec};

use super::{FieldError, Profile, parse_hex, pipeline_config};

/// How much of worker 0's pipeline [`check_pipeline`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableCheck {
    /// Build the tables at the profile's sizes, as `tack run` does (they
    /// are allocated, then freed): `tack check` and `tack run`.
    Build,
    /// Build them at the smallest size: a reload, which cannot change the
    /// sizes of the tables the workers already hold.
    Skip,
}

/// The MAC address a port is checked with when the profile gives none (the
/// device's is known only once DPDK opened it; the pipeline does not check it).
const PLACEHOLDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// Builds the pipeline configuration of `profile` and worker 0's pipeline
/// from it, as `tack run` does. Errors name the profile field at fault.
pub fn check_pipeline(profile: &Profile, tables: TableCheck) -> Result<(), FieldError> {
    let macs: Vec<[u8; 6]> = profile
        .ports
        .iter()
        .map(|p| p.mac.map_or(PLACEHOLDER_MAC, |m| m.0))
        .collect();
    let mut cfg = pipeline_config(profile, &macs)?;
    if tables == TableCheck::Skip {
        cfg.conn4.capacity = 1;
        cfg.conn6.capacity = 1;
        cfg.sticky.capacity = 1;
        cfg.neigh.capacity = cfg.static_neighbors.len().max(1);
    }
    let Some(first) = profile.workers.first() else {
        return Err(FieldError::new("workers", "at least one worker is needed"));
    };
    let spec = WorkerSpec {
        index: 0,
        n_workers: u16::try_from(profile.workers.len())
            .map_err(|_| FieldError::new("workers", "too many workers"))?,
        queue: first.queue,
        rx_queues: profile.ports.iter().map(|p| p.rx_queues).collect(),
        rss_key: profile
            .ports
            .iter()
            .map(|p| p.rss_key.as_deref().and_then(parse_hex))
            .collect(),
    };
    // Built and dropped: its tables are freed before anything else is allocated.
    Pipeline::<VecFrame>::new(Arc::new(cfg), spec).map_err(|e| pipeline_error(&e, profile))?;
    Ok(())
}

/// The profile field a pipeline's refusal is about, with its reason.
fn pipeline_error(e: &ConfigError, profile: &Profile) -> FieldError {
    use ConfigError as E;
    let (field, message) = match e {
        E::TooManyPorts(_) => ("ports".to_string(), e.to_string()),
        E::PortAddress {
            port,
            addr,
            prefix_len,
        } => {
            let at = profile.ports.get(*port).and_then(|p| {
                p.addresses
                    .iter()
                    .position(|n| n.addr() == *addr && n.prefix_len() == *prefix_len)
            });
            let field = match at {
                Some(j) => format!("ports[{port}].addresses[{j}]"),
                None => format!("ports[{port}].addresses"),
            };
            (
                field,
                format!("{addr}/{prefix_len} cannot be a port address"),
            )
        }
        E::Mtu { port, mtu } => (
            format!("ports[{port}].mtu"),
            format!("MTU {mtu} is below the minimum of 576 (1280 on a port with an IPv6 address)"),
        ),
        E::NoQueues { port } => (
            format!("ports[{port}].rx_queues"),
            "at least one receive queue is needed".to_string(),
        ),
        E::Rss { port, source } => (format!("ports[{port}].rss_key"), source.to_string()),
        E::Route { index, reason, .. } => (format!("routes[{index}]"), (*reason).to_string()),
        E::Conn4(c) => ("tables.connections".to_string(), c.to_string()),
        E::Conn6(c) => ("tables.connections_v6".to_string(), c.to_string()),
        E::Sticky(s) => ("tables.sticky".to_string(), s.to_string()),
        E::StaticNeighbor { index, reason } => {
            (format!("neighbours[{index}]"), (*reason).to_string())
        }
        _ => ("workers".to_string(), e.to_string()),
    };
    FieldError::new(field, message)
}

/// Lcore ids EAL accepts (`RTE_MAX_LCORE`).
pub const MAX_LCORES: u32 = 128;
/// CPU ids EAL accepts (`CPU_SETSIZE`).
const MAX_CPUS: u32 = 1024;

/// An EAL `--lcores` map: the lcores it defines and the CPUs they run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcoreMap {
    /// The lcores.
    pub lcores: BTreeSet<u32>,
    /// The CPUs they run on (an lcore without `@CPUS` runs on the CPU of its number).
    pub cpus: BTreeSet<u32>,
}

/// Parses an EAL `--lcores` map as EAL does (`LCORES[@CPUS][,LCORES[@CPUS]...]`,
/// each side a number, a range `a-b` or a group `(a,b-c,...)`). The error
/// says what is wrong, for `eal.lcores`.
pub fn parse_lcores(map: &str) -> Result<LcoreMap, String> {
    let mut out = LcoreMap {
        lcores: BTreeSet::new(),
        cpus: BTreeSet::new(),
    };
    let mut rest = map.trim();
    if rest.is_empty() {
        return Err("empty lcore map".into());
    }
    loop {
        let (set, after) = parse_set(rest, MAX_LCORES, "lcore")?;
        let after = match after.strip_prefix('@') {
            Some(cpus) => {
                let (cpus, after) = parse_set(cpus, MAX_CPUS, "CPU")?;
                out.cpus.extend(cpus);
                after
            }
            None => {
                out.cpus.extend(set.iter().copied());
                after
            }
        };
        for l in set {
            if !out.lcores.insert(l) {
                return Err(format!("lcore {l} is mapped twice"));
            }
        }
        let after = after.trim_start();
        if after.is_empty() {
            return Ok(out);
        }
        match after.strip_prefix(',') {
            Some(next) if !next.trim().is_empty() => rest = next.trim_start(),
            _ => {
                return Err(format!(
                    "`{after}`: expected `,` and another LCORES[@CPUS] element"
                ));
            }
        }
    }
}

/// The first of `cpus` this machine does not have, as EAL sees CPUs (its
/// `/sys/devices/system/cpu/cpuN/topology/core_id`); none when the machine
/// does not say (no `/sys`).
pub fn missing_cpu(cpus: impl IntoIterator<Item = u32>) -> Option<u32> {
    let sys = Path::new("/sys/devices/system/cpu");
    if !sys.is_dir() {
        return None;
    }
    cpus.into_iter()
        .find(|c| !sys.join(format!("cpu{c}/topology/core_id")).exists())
}

/// One number, range or parenthesised group at the start of `s`, each
/// number below `max`; returns the set and what follows it.
fn parse_set<'a>(s: &'a str, max: u32, what: &str) -> Result<(Vec<u32>, &'a str), String> {
    let number = |s: &'a str| -> Result<(u32, &'a str), String> {
        let s = s.trim_start();
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        if end == 0 {
            let got = s
                .chars()
                .next()
                .map_or("the end".to_string(), |c| format!("`{c}`"));
            return Err(format!("expected a {what} number, found {got}"));
        }
        let n: u32 = s[..end]
            .parse()
            .ok()
            .filter(|n| *n < max)
            .ok_or_else(|| format!("{what} {} is out of range (0..{})", &s[..end], max - 1))?;
        Ok((n, s[end..].trim_start()))
    };
    let range = |a: u32, b: u32| (a.min(b)..=a.max(b)).collect::<Vec<u32>>();
    let s = s.trim_start();
    if let Some(mut inner) = s.strip_prefix('(') {
        let mut out = Vec::new();
        loop {
            let (a, after) = number(inner)?;
            let (b, after) = match after.strip_prefix('-') {
                Some(r) => number(r)?,
                None => (a, after),
            };
            out.extend(range(a, b));
            if let Some(r) = after.strip_prefix(',') {
                inner = r;
            } else if let Some(r) = after.strip_prefix(')') {
                return Ok((out, r));
            } else {
                return Err(format!("unclosed group `({}`", inner.trim()));
            }
        }
    }
    let (a, after) = number(s)?;
    match after.strip_prefix('-') {
        Some(r) => {
            let (b, after) = number(r)?;
            Ok((range(a, b), after))
        }
        None => Ok((vec![a], after)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcore_maps() {
        let set = |m: &str| parse_lcores(m).map(|s| s.lcores.into_iter().collect::<Vec<_>>());
        assert_eq!(set("(0,1,2)@(0,1)"), Ok(vec![0, 1, 2]));
        assert_eq!(set("0@0,1@0"), Ok(vec![0, 1]));
        assert_eq!(
            set("1@2,(3-5)@(0,2),(6,8),9-10"),
            Ok(vec![1, 3, 4, 5, 6, 8, 9, 10])
        );
        let cpus = parse_lcores("1@2,(3-5)@(0,7),(6,8),9-10").unwrap().cpus;
        assert_eq!(
            cpus.into_iter().collect::<Vec<_>>(),
            vec![0, 2, 6, 7, 8, 9, 10]
        );
        assert_eq!(set(" 0 , 1 "), Ok(vec![0, 1]));
        for bad in [
            "", "x", "0@", "0,", "(0,1", "0@(0", "0;1", "128", "0@1024", "0,0", "(0-2),1", "0@0@0",
        ] {
            assert!(set(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
