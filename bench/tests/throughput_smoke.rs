//! The throughput harness in its smoke mode (`bench/throughput.py --smoke`,
//! as `scripts/bench.sh --smoke` runs it): a few thousand frames of UDP/IPv4
//! and TCP/IPv6 through `tack` (NAT) and `dpdk-testpmd` io-fwd over
//! `net_memif`. Nothing about speed is asserted: only that every timed
//! frame came back and was right (the generator checks each frame's NAT
//! rewrite — server MAC and address, TTL — and its IPv4 and TCP/UDP
//! checksums against what it sent), and that `tack`'s own counters saw them.
//!
//! It runs the `tack` and `tackctl` of its own target directory and profile,
//! built here if missing (`cargo test --workspace` builds them; alone, run
//! `cargo build -p tack-control --bins` first so they are current).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// `tack` and `tackctl` of this build's profile (built here if they are not:
/// they belong to another package of the workspace).
fn control_bins() -> (PathBuf, PathBuf) {
    let generator = PathBuf::from(env!("CARGO_BIN_EXE_tackgen"));
    let dir = generator.parent().expect("target dir").to_path_buf();
    let (tack, tackctl) = (dir.join("tack"), dir.join("tackctl"));
    if !tack.exists() || !tackctl.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root()).args([
            "build",
            "-p",
            "tack-control",
            "--bin",
            "tack",
            "--bin",
            "tackctl",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("cargo build").success(),
            "building tack"
        );
    }
    (tack, tackctl)
}

#[test]
fn smoke_run_forwards_every_frame_rewritten_and_checksummed() {
    // DPDK (EAL, memif) as the harness runs it needs root.
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    {
        panic!("run as root (DPDK)");
    }
    let testpmd = Command::new("sh")
        .args(["-c", "command -v dpdk-testpmd"])
        .output()
        .expect("sh");
    assert!(
        testpmd.status.success(),
        "dpdk-testpmd missing: run scripts/setup.sh (package dpdk-dev)"
    );
    let (tack, tackctl) = control_bins();
    let out = tempfile_dir();
    let run = Command::new("python3")
        .arg(root().join("bench/throughput.py"))
        .args(["--smoke", "--out"])
        .arg(&out)
        .env("TACK_BIN", &tack)
        .env("TACKCTL_BIN", &tackctl)
        .env("TACKGEN_BIN", env!("CARGO_BIN_EXE_tackgen"))
        .output()
        .expect("python3");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "harness failed:\n{text}");
    let json = std::fs::read_to_string(out.join("smoke.json")).expect("smoke.json");
    let _ = std::fs::remove_dir_all(&out);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let rows = doc["results"].as_array().expect("results");
    // UDP/IPv4 and TCP/IPv6, each through tack and testpmd.
    assert_eq!(rows.len(), 2, "{json}");
    for r in rows {
        let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
        // None of what came back failed its check (tack's NAT rewrite,
        // testpmd's unchanged frames).
        assert_eq!(n("bad"), 0, "{r}");
        // tack received every frame sent in the timed phase, and each came
        // back or was dropped for a counted reason.
        assert_eq!(n("sent"), 4000, "{r}");
        assert_eq!(n("fwd_rx"), n("sent"), "{r}\n{text}");
        assert_eq!(n("accounted"), n("sent"), "{r}");
        assert!(n("received") > 0, "{r}");
        // testpmd io-fwd returned its share too.
        let io = &r["runs"]["io"][0];
        assert_eq!(io["sent"].as_u64(), Some(4000), "{io}");
        assert!(io["received"].as_u64().unwrap_or(0) > 0, "{io}");
    }
}

/// A fresh directory for the harness's output.
fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tack-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
