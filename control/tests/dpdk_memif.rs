//! A memif port's counters in the final report survive its peer leaving
//! first (memif clears them when its peer disconnects): this process is the
//! peer, a memif client with an EAL of its own, and `tack` the server.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Tack, TempDir};
use tack_dpdk::{Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig};

/// An ARP request from 10.9.0.9 (02:00:00:00:00:09) for 10.9.0.1, padded to 60 bytes.
fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend([2, 0, 0, 0, 0, 9, 0x08, 0x06]);
    f.extend([0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend([2, 0, 0, 0, 0, 9, 10, 9, 0, 9]);
    f.extend([0, 0, 0, 0, 0, 0, 10, 9, 0, 1]);
    f.resize(60, 0);
    f
}

/// The numbers of port `name`'s row in the port table of a report.
fn port_row(report: &str, name: &str) -> Vec<u64> {
    report
        .lines()
        .skip_while(|l| !l.starts_with("port "))
        .skip(1)
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(name)).then(|| it.filter_map(|v| v.parse().ok()).collect())
        })
        .unwrap_or_default()
}

#[test]
fn memif_counters_survive_the_peer_leaving_first() {
    common::require_root();
    let dir = TempDir::new();
    let sock = dir.path("memif.sock");
    let profile = dir.path("memif.yaml");
    let devargs = |name: &str, role: &str| {
        format!(
            "{name},role={role},id=0,socket={},socket-abstract=no",
            sock.display()
        )
    };
    std::fs::write(
        &profile,
        format!(
            "eal: {{ hugepages: false, lcores: '0@0,1@0' }}\n\
             runtime: {{ idle: backoff, stats_interval_ms: 20 }}\n\
             mempool: {{ mbufs: 1023, cache: 32 }}\n\
             ports:\n  - name: m\n    device: {}\n    mac: 02:00:00:00:00:01\n    addresses: [10.9.0.1/24]\n\
             workers:\n  - {{ lcore: 1, port: m }}\n",
            devargs("net_memif0", "server")
        ),
    )
    .unwrap();
    let mut tack = Tack::start_plain(&profile);
    tack.wait_for_line("running", Duration::from_secs(20));

    // The client end, in this process.
    let name = format!("tackmemif{}", std::process::id());
    let _run_dir = EmptyDirGuard(Path::new("/var/run/dpdk").join(&name));
    let prefix = format!("--file-prefix={name}");
    let eal = Eal::init([
        "--no-huge",
        "--no-shconf",
        "-m",
        "128",
        "--no-pci",
        "--no-telemetry",
        "--lcores=0@0",
        "--log-level=*:warning",
        prefix.as_str(),
    ])
    .expect("EAL init");
    let pool = Mempool::create(
        eal,
        "memifpeer",
        &MempoolConfig {
            size: 511,
            cache_size: 0,
            ..MempoolConfig::default()
        },
    )
    .expect("mempool");
    let port = Port::open(eal, &devargs("net_memif1", "client")).expect("memif client");
    let (mut rxq, mut txq) = port
        .configure(&PortConfig::default(), &[pool])
        .expect("configure");
    port.start().expect("start");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port.link().is_ok_and(|l| l.up) {
        assert!(Instant::now() < deadline, "memif did not connect");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Five ARP requests, five replies.
    const N: usize = 5;
    let mut replies = 0;
    let mut rx: Vec<Mbuf> = Vec::new();
    for _ in 0..N {
        let mut tx = vec![pool.alloc_from(&arp_request()).expect("mbuf")];
        while !tx.is_empty() {
            assert!(Instant::now() < deadline, "memif does not take frames");
            txq[0].tx_burst(&mut tx);
        }
    }
    while replies < N && Instant::now() < deadline {
        rxq[0].rx_burst(&mut rx, 32);
        replies += rx
            .drain(..)
            .filter(|m| m.data().get(12..14) == Some(&[0x08, 0x06][..]))
            .count();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(replies, N, "ARP replies from tack");
    // Let tack's control thread read its counters, then leave: tack's
    // memif port disconnects and its driver clears its counters.
    std::thread::sleep(Duration::from_millis(200));
    port.stop().expect("stop");
    port.close().expect("close");
    std::thread::sleep(Duration::from_millis(200));

    let report = tack.stop();
    assert_eq!(
        port_row(&report, "m").get(..2),
        Some(&[N as u64, N as u64][..]),
        "{report}"
    );
}

/// Removes a directory when dropped (even if the test fails), if it is
/// empty: EAL's runtime directory for this process's own prefix, which
/// `--no-shconf` leaves empty.
struct EmptyDirGuard(std::path::PathBuf);

impl Drop for EmptyDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
