//! `tack` on a `net_pcap` port: a capture of ARP requests, pings, an NDP
//! solicitation and frames to drop goes in; the replies that come out are
//! compared byte for byte with the ones scapy built (`data/gen_pcap.py`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// The frames of a pcap file (classic format, either byte order).
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_default();
    if data.len() < 24 {
        return Vec::new();
    }
    let le = match data[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("{}: not a pcap file", path.display()),
    };
    let u32_at = |o: usize| {
        let b = [data[o], data[o + 1], data[o + 2], data[o + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let caplen = u32_at(off + 8) as usize;
        let start = off + 16;
        if start + caplen > data.len() {
            break; // a record still being written
        }
        frames.push(data[start..start + caplen].to_vec());
        off = start + caplen;
    }
    frames
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn arp_and_ping_replies_match_scapy_byte_for_byte() {
    common::require_root();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let input = data.join("arp_ping_in.pcap");
    let expected = read_pcap(&data.join("arp_ping_out.pcap"));
    assert_eq!(expected.len(), 6);
    let dir = TempDir::new();
    let out = dir.path("out.pcap");
    let profile = dir.path("pcap.yaml");
    std::fs::write(
        &profile,
        format!(
            "eal: {{ hugepages: false, lcores: '0@0,1@0' }}\n\
             runtime: {{ idle: backoff, announce: false }}\n\
             mempool: {{ mbufs: 1023, cache: 32 }}\n\
             ports:\n  - name: cap\n    device: net_pcap0,rx_pcap={},tx_pcap={}\n    mac: 02:00:00:00:00:01\n    addresses: [10.9.0.1/24, fd09::1/64]\n\
             workers:\n  - {{ lcore: 1, port: cap }}\n",
            input.display(),
            out.display()
        ),
    )
    .unwrap();
    // No namespace needed: the port is a pair of files.
    let mut tack = Tack::start_plain(&profile);
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_pcap(&out).len() < expected.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    tack.wait_for_line("running", Duration::from_secs(1));
    let report = tack.stop();
    let got = read_pcap(&out);
    assert_eq!(
        got.len(),
        expected.len(),
        "replies sent; counters:\n{report}"
    );
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(hex(g), hex(e), "reply #{i} differs from scapy's");
    }
    assert_eq!(counter(&report, "rx_packets"), Some(9), "{report}");
    assert_eq!(counter(&report, "tx_packets"), Some(6), "{report}");
    assert_eq!(counter(&report, "arp_replies"), Some(1), "{report}");
    assert_eq!(counter(&report, "echo_replies"), Some(4), "{report}");
    assert_eq!(counter(&report, "ndp_adverts"), Some(1), "{report}");
    // Dropped and counted: the truncated frame and the ping to another host;
    // the ARP request for another address only teaches the neighbour table.
    assert_eq!(
        counter(&report, "drop_wire_truncated_ipv4"),
        Some(1),
        "{report}"
    );
    assert_eq!(counter(&report, "drop_not_for_us"), Some(1), "{report}");
    assert_eq!(counter(&report, "rx_consumed"), Some(1), "{report}");
    // The worker received and sent: some of its time was busy, not all.
    let busy = counter(&report, "busy_cycles").unwrap_or(0);
    let total = counter(&report, "total_cycles").unwrap_or(0);
    assert!(busy > 0 && busy < total, "{report}");
    // The port table (rx_packets, tx_packets first), read after the workers
    // stopped and before the port did: the device's own count of the same frames.
    assert_eq!(
        port_row(&report, "cap").get(..2),
        Some(&[9, 6][..]),
        "{report}"
    );
}

/// The numbers of port `name`'s row in the port table of a report.
fn port_row(report: &str, name: &str) -> Vec<u64> {
    let mut table = report
        .lines()
        .skip_while(|l| !l.starts_with("port "))
        .skip(1);
    table
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(name)).then(|| it.filter_map(|v| v.parse().ok()).collect())
        })
        .unwrap_or_default()
}
