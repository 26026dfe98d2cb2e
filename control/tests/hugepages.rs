//! `tack run` backs its tables with transparent huge pages unless the
//! profile says `runtime: { huge_pages: false }`: its allocator advises them
//! (`madvise(MADV_HUGEPAGE)`) for the tables, and the kernel then gives the
//! connection tables 2 MiB pages.

mod common;

use common::*;

/// A profile with one `net_null` port that receives nothing.
fn profile(dir: &TempDir, huge_pages: bool) -> std::path::PathBuf {
    let p = dir.path(if huge_pages {
        "huge.yaml"
    } else {
        "small.yaml"
    });
    let sock = dir.path(if huge_pages {
        "huge.sock"
    } else {
        "small.sock"
    });
    std::fs::write(
        &p,
        format!(
            "eal: {{ hugepages: false, lcores: '0@0,1@0' }}\n\
             runtime: {{ idle: backoff, huge_pages: {huge_pages} }}\n\
             mempool: {{ mbufs: 1023, cache: 32 }}\n\
             ports:\n  - name: p\n    device: net_null0,no-rx=1\n    mac: 02:00:00:00:00:01\n    addresses: [10.9.0.1/24]\n\
             workers:\n  - {{ lcore: 1, port: p }}\n\
             management: {{ socket: {} }}\n",
            sock.display()
        ),
    )
    .unwrap();
    p
}

/// `AnonHugePages` of the process, in KiB.
fn anon_huge_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    s.lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn tables_on_transparent_huge_pages() {
    require_root();
    let dir = TempDir::new();
    let mode = tack_control::hugepages::thp_mode().unwrap_or_default();

    let mut tack = Tack::start_plain(&profile(&dir, true));
    let line = tack.wait_for_line("tack: tables on", std::time::Duration::from_secs(1));
    let huge = anon_huge_kib(tack.pid());
    tack.stop();
    if mode == "never" {
        assert!(line.contains("4 KiB pages"), "{line}");
    } else {
        assert!(line.contains("on huge pages"), "{line}");
        // The connection tables' control bytes are written when they are
        // built: at least those pages are huge.
        assert!(huge >= 2048, "AnonHugePages {huge} kB with THP mode {mode}");
    }

    let mut tack = Tack::start_plain(&profile(&dir, false));
    let line = tack.wait_for_line("tack: tables on", std::time::Duration::from_secs(1));
    let huge = anon_huge_kib(tack.pid());
    tack.stop();
    assert!(line.contains("4 KiB pages"), "{line}");
    if mode == "madvise" {
        // Nothing advised: nothing huge.
        assert_eq!(huge, 0, "AnonHugePages with huge_pages off");
    }
}
