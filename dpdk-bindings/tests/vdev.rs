//! DPDK tests on virtual devices: no NIC and no hugepages needed.
//!
//! EAL can be initialised once per process, so every test here shares one EAL
//! (`--no-huge --no-shconf`) through [`eal()`], and each test uses its own
//! device and pool names.

use std::sync::OnceLock;

use tack_dpdk::{Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig, ring};

fn eal() -> Eal {
    static EAL: OnceLock<Eal> = OnceLock::new();
    *EAL.get_or_init(|| {
        let prefix = format!("--file-prefix=tackdpdk{}", std::process::id());
        Eal::init([
            "--no-huge",
            "--no-shconf",
            "-m",
            "256",
            "--no-pci",
            "--no-telemetry",
            "--lcores=0@0,1@0",
            "--log-level=lib.eal:warning",
            prefix.as_str(),
        ])
        .expect("EAL init with virtual devices only")
    })
}

fn pool(name: &str, size: u32) -> Mempool {
    Mempool::create(
        eal(),
        name,
        &MempoolConfig {
            size,
            cache_size: 0,
            ..MempoolConfig::default()
        },
    )
    .expect("mempool")
}

fn frame(i: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (k as u8).wrapping_mul(7).wrapping_add(i))
        .collect()
}

#[test]
fn second_init_is_an_error_not_a_panic() {
    let _ = eal();
    let err = Eal::init(["--no-huge"]).expect_err("EAL cannot be initialised twice");
    assert!(err.to_string().contains("already initialised"), "{err}");
    assert!(Eal::get().is_some());
}

#[test]
fn net_ring_transmits_then_receives_the_same_frames() {
    let eal = eal();
    let mp = pool("ringtest", 1023);
    let port = Port::open(eal, "net_ring0").expect("net_ring0 probes");
    assert_eq!(port.name().unwrap(), "net_ring0");
    let info = port.info().unwrap();
    assert_eq!(info.driver, "net_ring");
    let (mut rxq, mut txq) = port
        .configure(&PortConfig::default(), &[mp])
        .expect("configure");
    port.start().expect("start");
    let idle = mp.in_use();

    let sent_frames: Vec<Vec<u8>> = (0..20u8).map(|i| frame(i, 60 + i as usize * 3)).collect();
    let mut tx: Vec<Mbuf> = sent_frames
        .iter()
        .map(|f| mp.alloc_from(f).expect("alloc"))
        .collect();
    assert_eq!(mp.in_use(), idle + 20);
    assert_eq!(txq[0].tx_burst(&mut tx), 20);
    assert!(tx.is_empty());

    let mut rx = Vec::new();
    let mut tries = 0;
    while rx.len() < 20 && tries < 100 {
        rxq[0].rx_burst(&mut rx, 32);
        tries += 1;
    }
    assert_eq!(rx.len(), 20);
    for (m, f) in rx.iter().zip(&sent_frames) {
        assert_eq!(m.data(), &f[..]);
        assert_eq!(m.pkt_len(), f.len());
    }
    drop(rx);
    assert_eq!(mp.in_use(), idle, "every mbuf went back to the pool");

    let st = port.stats().unwrap();
    assert_eq!(st.opackets, 20);
    assert_eq!(st.ipackets, 20);
    port.stop().unwrap();
    port.close().unwrap();
}

#[test]
fn mbuf_headroom_prepend_adj_append_trim() {
    let mp = pool("mbuftest", 63);
    let mut m = mp.alloc_from(&[1, 2, 3, 4]).unwrap();
    let head = m.headroom();
    assert_eq!(head, 128);
    let outer = m.prepend(20).expect("headroom for an IP-in-IP header");
    assert_eq!(outer.len(), 24);
    outer[..20].fill(0xaa);
    assert_eq!(m.headroom(), head - 20);
    assert_eq!(&m.data()[20..], &[1, 2, 3, 4]);
    assert!(m.adj(20));
    assert_eq!(m.data(), &[1, 2, 3, 4]);
    m.append(2).unwrap().copy_from_slice(&[5, 6]);
    assert_eq!(m.data(), &[1, 2, 3, 4, 5, 6]);
    assert!(m.trim(3));
    assert_eq!(m.data(), &[1, 2, 3]);
    assert!(m.set_len(5));
    assert_eq!(m.pkt_len(), 5);
    assert!(!m.adj(100), "cannot remove more than there is");
    assert!(
        m.prepend(4000).is_none(),
        "no more headroom than the buffer has"
    );
    assert!(
        mp.alloc_from(&vec![0u8; 5000]).is_none(),
        "larger than one buffer"
    );
}

#[test]
fn pool_exhaustion_is_none_not_a_crash() {
    let mp = pool("tinypool", 7);
    let held: Vec<Mbuf> = std::iter::from_fn(|| mp.alloc()).take(100).collect();
    assert_eq!(held.len(), 7);
    assert!(mp.alloc().is_none());
    assert_eq!(mp.available(), 0);
    drop(held);
    assert_eq!(mp.available(), 7);
}

#[test]
fn spsc_ring_moves_boxes_and_mbufs_between_threads() {
    let eal = eal();
    let (mut p, mut c) = ring::spsc::<Box<u64>>(eal, "testring", 1000).unwrap();
    let producer = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < 100_000 {
            let mut batch: Vec<Box<u64>> = (next..(next + 50).min(100_000)).map(Box::new).collect();
            let n = batch.len() as u64;
            while !batch.is_empty() {
                p.push_burst(&mut batch);
            }
            next += n;
        }
    });
    let mut got = Vec::new();
    let mut expect = 0u64;
    while expect < 100_000 {
        got.clear();
        c.pop_burst(&mut got, 64);
        for v in &got {
            assert_eq!(**v, expect, "FIFO order");
            expect += 1;
        }
    }
    producer.join().unwrap();
    assert!(c.is_empty());

    let mp = pool("ringmbufs", 63);
    let idle = mp.in_use();
    let (mut p, c) = ring::spsc::<Mbuf>(eal, "mbufring", 15).unwrap();
    for i in 0..15u8 {
        p.push(mp.alloc_from(&[i]).unwrap()).expect("room");
    }
    let extra = mp.alloc_from(&[99]).unwrap();
    let back = p.push(extra).expect_err("ring holds 15");
    assert_eq!(back.data(), &[99]);
    drop(back);
    drop((p, c));
    assert_eq!(mp.in_use(), idle, "items left in a dropped ring are freed");
}

#[test]
fn launch_runs_on_the_worker_lcore() {
    let eal = eal();
    let workers = eal.worker_lcores();
    assert_eq!(workers, vec![1]);
    let h = eal
        .launch(1, || {
            tack_dpdk::current_lcore().map_or(-1, |l| l as i32 * 10)
        })
        .unwrap();
    assert_eq!(h.join(), 10);
    assert!(eal.launch(7, || 0).is_err(), "lcore 7 is not enabled");
    assert!(tack_dpdk::tsc_hz() > 0);
}

#[test]
fn unknown_vdev_is_an_error() {
    let eal = eal();
    let err = Port::open(eal, "net_doesnotexist0").expect_err("no such driver");
    assert!(
        err.to_string().contains("rte_dev_probe(net_doesnotexist0)"),
        "{err}"
    );
}

#[test]
fn softrss_matches_the_published_toeplitz_vector() {
    // Microsoft's RSS verification suite, IPv4 with ports:
    // 66.9.149.187:2794 -> 161.142.100.80:1766 hashes to 0x51ccc178.
    let key: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];
    let src = u32::from_be_bytes([66, 9, 149, 187]);
    let dst = u32::from_be_bytes([161, 142, 100, 80]);
    let ports = (2794u32 << 16) | 1766;
    assert_eq!(
        tack_dpdk::ring::softrss(&[src, dst, ports], &key).unwrap(),
        0x51cc_c178
    );
    assert_eq!(
        tack_dpdk::ring::softrss(&[src, dst], &key).unwrap(),
        0x323e_8fc2
    );
    assert!(tack_dpdk::ring::softrss(&[0; 10], &key[..8]).is_err());
}

/// A pool without spreading padding: 3904-byte data rooms make objects of
/// exactly a 4 KiB page (what `net_af_xdp`'s UMEM needs), where the default
/// layout pads them to 4160 bytes; its mbufs work as any pool's.
#[test]
fn a_no_spread_pool_tiles_pages() {
    let cfg = |no_spread| MempoolConfig {
        size: 255,
        cache_size: 0,
        data_room: 3904,
        no_spread,
        ..MempoolConfig::default()
    };
    let spread = Mempool::create(eal(), "tiles_spread", &cfg(false)).expect("pool");
    assert_eq!(spread.object_size(), 4160);
    let tiled = Mempool::create(eal(), "tiles_nospread", &cfg(true)).expect("pool");
    assert_eq!(tiled.object_size(), 4096);
    let m = tiled
        .alloc_from(&frame(7, 3000))
        .expect("one buffer holds 3000 bytes");
    assert_eq!(m.data().len(), 3000);
    assert_eq!(tiled.in_use(), 1);
    drop(m);
    assert_eq!(tiled.in_use(), 0);
}
