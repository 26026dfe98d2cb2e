//! Two workers over `net_af_xdp` on the lab's two-queue veth (`lab.sh up
//! --queues 2`), without and then with `tack steering-program` on the
//! bridge's end of it: without, the kernel's hash picks the queue and the
//! workers hand about half the frames to each other; with it, each frame
//! arrives on the queue of the worker that owns it, for NAT (both
//! directions of a connection steered by its client), full NAT and direct
//! server return over IPv4 and IPv6, and the workers hand over (almost)
//! none.

mod common;

use common::lab::{LAB_LOCK, Lab, tackctl};
use common::{counter, tack_bin};

const SERVICES: &str = r#"  - name: web
    vip: 10.100.0.10
    port: 80
    mode: nat
    servers: [ { address: 10.0.0.11 }, { address: 10.0.0.12 }, { address: 10.0.0.13 } ]
  - name: web-fnat
    vip: 10.100.0.11
    port: 80
    mode: fullnat
    local_addresses: [10.0.0.201, 10.0.0.202]
    servers: [ { address: 10.0.0.11 }, { address: 10.0.0.12 }, { address: 10.0.0.13 } ]
  - name: web-dsr
    vip: 10.100.0.12
    port: 80
    mode: dsr
    servers: [ { address: 10.0.0.11 }, { address: 10.0.0.12 }, { address: 10.0.0.13 } ]
  - name: web6
    vip: "fd00:100::11"
    port: 80
    mode: fullnat
    local_addresses: ["fd00::201"]
    servers: [ { address: "fd00::11" }, { address: "fd00::12" }, { address: "fd00::13" } ]
"#;

/// The URLs driven, each with wrk (keep-alive) from c1.
const URLS: [&str; 4] = [
    "http://10.100.0.10/",
    "http://10.100.0.11/",
    "http://10.100.0.12/",
    "http://[fd00:100::11]/",
];

/// (frames the workers received, frames they handed to another worker).
fn totals(socket: &std::path::Path) -> (u64, u64) {
    let c = tackctl(socket, "counters");
    (
        counter(&c, "rx_packets").unwrap_or(0),
        counter(&c, "steered_out").unwrap_or(0),
    )
}

/// 2 s of wrk on every URL; the requests made.
fn drive(lab: &Lab) -> u64 {
    let mut total = 0;
    for url in URLS {
        let (ok, out, err) = lab.exec("c1", &["wrk", "-t1", "-c8", "-d2s", "--timeout", "2s", url]);
        assert!(ok, "wrk {url}: {err}");
        assert!(!out.contains("Socket errors"), "wrk {url}:\n{out}");
        let n = common::wrk_requests(&out);
        assert!(n > 200, "wrk {url} made {n} requests:\n{out}");
        total += n;
    }
    total
}

#[test]
fn the_steering_program_keeps_every_frame_on_its_workers_queue() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::up_with_queues(2);
    let (profile, socket) = lab.profile_xdp(2, SERVICES);
    let tack = lab.start_tack_xdp(&profile);

    let start = totals(&socket);
    let without = drive(&lab);
    let mid = totals(&socket);

    let profile_arg = profile.to_str().expect("utf-8 path");
    let tack_arg = tack_bin();
    let (ok, out, err) = lab.exec(
        "sw",
        &[
            tack_arg.to_str().expect("utf-8 path"),
            "steering-program",
            "--config",
            profile_arg,
            "--attach",
            "p-lb",
        ],
    );
    assert!(ok && out.contains("attached to p-lb"), "{out}{err}");
    let with = drive(&lab);
    let end = totals(&socket);

    let share = |a: (u64, u64), b: (u64, u64)| (b.1 - a.1) as f64 / (b.0 - a.0).max(1) as f64;
    let (before, after) = (share(start, mid), share(mid, end));
    eprintln!(
        "handed over: {:.1} % of {} frames without the steering program ({without} requests), \
         {:.2} % of {} with it ({with} requests)",
        100.0 * before,
        mid.0 - start.0,
        100.0 * after,
        end.0 - mid.0
    );
    assert!(
        before > 0.2,
        "without the program the queues follow the kernel's hash: {before}"
    );
    assert!(
        after < 0.01,
        "with it, the frames arrive on their owner's queue: {after}"
    );

    let report = tack.stop();
    assert!(report.contains("mbufs in use after stop: 0"), "{report}");
    assert!(
        report.contains(
            "mbufs kept by net_af_xdp's fill rings (2048 a queue, not returned by its close): 4096"
        ),
        "{report}"
    );
    assert_eq!(counter(&report, "steer_ring_full"), None, "{report}");
}
