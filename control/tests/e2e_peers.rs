//! `bench/peers.sh --smoke`: Tack, HAProxy and nftables take the lab's VIP
//! in turn and each serves wrk's keep-alive and one-request-per-connection
//! runs without an error. Checks that the comparison runs and what it
//! prints, never the speed.

mod common;

use std::process::Command;

use common::lab::{LAB_LOCK, root};
use common::{require_root, unique};

#[test]
fn peers_smoke_run_serves_every_peer() {
    require_root();
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(root().join("bench/peers.sh"))
        .args(["--smoke", "--prefix", &unique("tp"), "--tack"])
        .arg(env!("CARGO_BIN_EXE_tack"))
        .output()
        .expect("run bench/peers.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "peers.sh failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The raw runs: round, peer, test, requests, seconds, rps, p50, p99, errors, ...
    let raw = text.split("Raw runs:").nth(1).expect("raw runs");
    let mut seen = Vec::new();
    for line in raw.lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 11 {
            continue;
        }
        let requests: u64 = f[3].parse().expect("requests");
        let errors: u64 = f[8].parse().expect("errors");
        assert!(requests > 0 && errors == 0, "{line}");
        seen.push((f[1].to_string(), f[2].to_string()));
    }
    for peer in ["tack-nat", "haproxy", "nft"] {
        for test in ["keepalive", "close"] {
            assert!(
                seen.contains(&(peer.to_string(), test.to_string())),
                "no {peer} {test} run in:\n{text}"
            );
        }
    }
    // The summary has a row per peer in both tables.
    for peer in ["tack-nat", "haproxy", "nft"] {
        assert_eq!(
            text.lines().filter(|l| l.starts_with(peer)).count(),
            2,
            "{peer} rows in:\n{text}"
        );
    }
}
