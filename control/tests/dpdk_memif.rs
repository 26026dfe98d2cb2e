//! `tack` with a memif port whose peer is this process (a memif client with
//! an EAL of its own): the port counters in the final report survive the
//! peer leaving first (memif clears them when its peer disconnects), and the
//! profile's static neighbours are used from the first frame, without ARP,
//! and again after a reload that changes them.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{Tack, TempDir};
use tack_dpdk::{Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig, RxQueue, TxQueue};

/// One `tack` at a time: they share two CPUs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The EAL's runtime directory prefix of this process.
fn prefix() -> String {
    format!("tackmemif{}", std::process::id())
}

/// This process's EAL (once per process) and its packet pool.
fn eal() -> (Eal, Mempool) {
    static EAL: OnceLock<(Eal, Mempool)> = OnceLock::new();
    *EAL.get_or_init(|| {
        let prefix = format!("--file-prefix={}", prefix());
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
                size: 1023,
                cache_size: 0,
                ..MempoolConfig::default()
            },
        )
        .expect("mempool");
        (eal, pool)
    })
}

/// Removes EAL's runtime directory of this process's prefix when dropped
/// (even if the test fails), if it is empty (`--no-shconf` leaves it empty).
struct RunDirGuard;

impl Drop for RunDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(Path::new("/var/run/dpdk").join(prefix()));
    }
}

/// The memif devargs of `name` on socket `sock`.
fn devargs(name: &str, role: &str, sock: &Path) -> String {
    format!(
        "{name},role={role},id=0,socket={},socket-abstract=no",
        sock.display()
    )
}

/// The client end of a memif link with `tack`.
struct Peer {
    port: Port,
    rxq: RxQueue,
    txq: TxQueue,
    pool: Mempool,
}

impl Peer {
    /// Connects to the memif server on `sock` as device `name`.
    fn connect(name: &str, sock: &Path) -> Peer {
        let (eal, pool) = eal();
        let port = Port::open(eal, &devargs(name, "client", sock)).expect("memif client");
        let (mut rx, mut tx) = port
            .configure(&PortConfig::default(), &[pool])
            .expect("configure");
        port.start().expect("start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !port.link().is_ok_and(|l| l.up) {
            assert!(Instant::now() < deadline, "memif did not connect");
            std::thread::sleep(Duration::from_millis(20));
        }
        Peer {
            port,
            rxq: rx.remove(0),
            txq: tx.remove(0),
            pool,
        }
    }

    fn send(&mut self, frame: &[u8]) {
        let mut tx = vec![self.pool.alloc_from(frame).expect("mbuf")];
        let deadline = Instant::now() + Duration::from_secs(5);
        while !tx.is_empty() {
            assert!(Instant::now() < deadline, "memif does not take frames");
            self.txq.tx_burst(&mut tx);
        }
    }

    /// Every frame received within `wait`.
    fn receive(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut rx: Vec<Mbuf> = Vec::new();
        let mut got = Vec::new();
        while Instant::now() < deadline {
            self.rxq.rx_burst(&mut rx, 32);
            got.extend(rx.drain(..).map(|m| m.data().to_vec()));
            std::thread::sleep(Duration::from_millis(5));
        }
        got
    }

    /// Disconnects.
    fn leave(self) {
        self.port.stop().expect("stop");
        self.port.close().expect("close");
    }
}

/// The profile of a `tack` whose one port is the memif server on `sock`,
/// with `extra` appended.
fn profile(dir: &TempDir, sock: &Path, extra: &str) -> PathBuf {
    let path = dir.path("memif.yaml");
    std::fs::write(
        &path,
        format!(
            "eal: {{ hugepages: false, lcores: '0@0,1@0' }}\n\
             runtime: {{ idle: backoff, stats_interval_ms: 20 }}\n\
             mempool: {{ mbufs: 1023, cache: 32 }}\n\
             ports:\n  - name: m\n    device: {}\n    mac: 02:00:00:00:00:01\n    addresses: [10.9.0.1/24]\n\
             workers:\n  - {{ lcore: 1, port: m }}\n\
             management: {{ socket: {} }}\n{extra}",
            devargs("net_memif0", "server", sock),
            dir.path("tack.sock").display()
        ),
    )
    .unwrap();
    path
}

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

fn is_arp(f: &[u8]) -> bool {
    f.get(12..14) == Some(&[0x08, 0x06][..])
}

/// The one's complement sum of `b` folded to 16 bits.
fn checksum(b: &[u8], mut sum: u32) -> u16 {
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP SYN from 10.9.0.9:`sport` (02:00:00:00:00:09) to 10.9.0.100:80.
fn syn(sport: u16) -> Vec<u8> {
    let (src, dst) = ([10, 9, 0, 9], [10, 9, 0, 100]);
    let mut tcp = Vec::new();
    tcp.extend(sport.to_be_bytes());
    tcp.extend(80u16.to_be_bytes());
    tcp.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    let mut pseudo = Vec::new();
    pseudo.extend(src);
    pseudo.extend(dst);
    pseudo.extend([0, 6, 0, tcp.len() as u8]);
    pseudo.extend(&tcp);
    let c = checksum(&pseudo, 0);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 20 + tcp.len() as u8, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend(src);
    ip.extend(dst);
    let c = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9, 0x08, 0x00];
    f.extend(ip);
    f.extend(tcp);
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
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _run_dir = RunDirGuard;
    let dir = TempDir::new();
    let sock = dir.path("memif.sock");
    let tack = Tack::start_plain(&profile(&dir, &sock, ""));
    let mut peer = Peer::connect("net_memif1", &sock);
    // Five ARP requests, five replies.
    const N: usize = 5;
    for _ in 0..N {
        peer.send(&arp_request());
    }
    let replies = peer.receive(Duration::from_millis(500));
    assert_eq!(replies.iter().filter(|f| is_arp(f)).count(), N);
    // Let tack's control thread read its counters (every 20 ms), then
    // leave: tack's memif port disconnects and its driver clears them.
    std::thread::sleep(Duration::from_millis(200));
    peer.leave();
    std::thread::sleep(Duration::from_millis(200));
    let report = tack.stop();
    assert_eq!(
        port_row(&report, "m").get(..2),
        Some(&[N as u64, N as u64][..]),
        "{report}"
    );
}

#[test]
fn static_neighbours_are_used_without_arp_and_after_a_reload() {
    common::require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _run_dir = RunDirGuard;
    let dir = TempDir::new();
    let sock = dir.path("memif-neigh.sock");
    let services = "services:\n  - { name: web, vip: 10.9.0.100, port: 80, mode: nat, servers: [ { address: 10.9.0.11 } ] }\n";
    let neighbour = |mac: &str| {
        format!("{services}neighbours:\n  - {{ port: m, address: 10.9.0.11, mac: \"{mac}\" }}\n")
    };
    let path = profile(&dir, &sock, &neighbour("02:00:00:00:00:11"));
    let mut tack = Tack::start_plain(&path);
    let mut peer = Peer::connect("net_memif2", &sock);
    // The SYN goes to the server's static MAC at once, and no ARP request is sent.
    for (sport, mac) in [(40000, 0x11), (40001, 0x12)] {
        if mac == 0x12 {
            // A reload that changes the entry: the workers take the new MAC.
            profile(&dir, &sock, &neighbour("02:00:00:00:00:12"));
            tack.reload();
        }
        peer.send(&syn(sport));
        let out = peer.receive(Duration::from_millis(300));
        assert!(!out.iter().any(|f| is_arp(f)), "no ARP: {out:02x?}");
        assert_eq!(out.len(), 1, "{out:02x?}");
        assert_eq!(out[0][..6], [2, 0, 0, 0, 0, mac], "destination MAC");
        assert_eq!(out[0][14 + 16..14 + 20], [10, 9, 0, 11], "to the server");
    }
    peer.leave();
    let report = tack.stop();
    assert_eq!(
        common::counter(&report, "arp_requests_sent"),
        None,
        "{report}"
    );
}
