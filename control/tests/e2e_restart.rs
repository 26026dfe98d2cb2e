//! Full NAT across a restart, in the lab of `scripts/lab.sh`: `tack` is
//! stopped after a burst of short connections and started again while the
//! servers still hold those connections' tuples in TIME_WAIT. The new
//! instance keeps the tuples the old one saved out of its port choice
//! (`runtime.fnat_quarantine`): the servers drop no SYN for PAWS and no
//! request fails. The same restart without the saved tuples shows that the
//! check sees the drops (the clients then retry their SYN). After a crash
//! (`kill -9`: no tuples saved) the new instance resumes its port walk
//! ahead of the checkpoint the old one wrote every second, with the same
//! result.

mod common;

use std::path::Path;

use common::lab::{LAB_LOCK, Lab};
use common::{Tack, counter};

const SERVICES: &str = r#"  - name: fnat
    vip: 10.100.0.11
    port: 80
    mode: fullnat
    local_addresses: [10.0.0.201]
    servers: [ { name: s1, address: 10.0.0.11 }, { name: s2, address: 10.0.0.12 }, { name: s3, address: 10.0.0.13 } ]
"#;

/// SYNs the lab's servers dropped because they hit a tuple in TIME_WAIT
/// with older timestamps (`TcpExtPAWSTimewait`, summed).
fn paws_drops(lab: &Lab) -> u64 {
    ["s1", "s2", "s3"]
        .iter()
        .map(|s| {
            let (ok, out, err) = lab.exec(s, &["nstat", "-az", "TcpExtPAWSTimewait"]);
            assert!(ok, "nstat: {err}");
            counter(&out, "TcpExtPAWSTimewait").expect("TcpExtPAWSTimewait")
        })
        .sum()
}

/// `count` requests from client c2, each on a new connection, 16 at a
/// time, each given 5 s. Returns (answered, failed).
fn requests(lab: &Lab, count: usize) -> (u64, u64) {
    let script = common::lab::root().join("scripts/lab/hits.py");
    let (ok, out, err) = lab.exec(
        "c2",
        &[
            "python3",
            script.to_str().expect("utf-8 path"),
            "http://10.100.0.11/",
            &count.to_string(),
            "--parallel",
            "16",
            "--timeout",
            "5",
        ],
    );
    assert!(ok, "hits.py: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("hits.py JSON");
    let answered = v["servers"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|x| x.as_u64()).sum());
    (answered, v["errors"].as_u64().expect("errors"))
}

/// A burst of connections from client c1 (wrk, one request per connection).
fn burst(lab: &Lab) {
    let (ok, out, err) = lab.exec(
        "c1",
        &[
            "wrk",
            "-t1",
            "-c16",
            "-d2s",
            "-H",
            "Connection: close",
            "http://10.100.0.11/",
        ],
    );
    assert!(ok && out.contains("requests in"), "wrk: {out}{err}");
}

fn saved_tuples(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

#[test]
fn full_nat_restart_under_load_reuses_no_tuple_in_time_wait() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up();
    let (profile, socket) = lab.profile(1, SERVICES);
    let file = socket.with_extension("fnat");

    // The first instance opens and closes thousands of connections.
    let first = Tack::start(&lab.lb(), &profile);
    burst(&lab);
    first.stop();
    let saved = saved_tuples(&file);
    assert!(saved > 1000, "{saved} full-NAT tuples saved");
    // The saved tuples alone: without the walk checkpoint the next
    // instance starts its walk on them (the crash test below resumes it).
    std::fs::remove_file(socket.with_extension("fnat.walk")).expect("walk checkpoint");

    // The next one keeps them out: no SYN dropped, no request failed.
    let before = paws_drops(&lab);
    let mut second = Tack::start(&lab.lb(), &profile);
    let line = second.wait_for_line("full-NAT tuples", std::time::Duration::from_secs(1));
    assert!(line.contains(&format!("{saved} full-NAT tuples")), "{line}");
    let (answered, failed) = requests(&lab, 3000);
    let drops = paws_drops(&lab) - before;
    let report = second.stop();
    assert_eq!(
        (answered, failed, drops),
        (3000, 0, 0),
        "answered, failed, PAWS drops"
    );
    assert!(
        counter(&report, "fnat_port_quarantined").is_some_and(|n| n > 0),
        "{report}"
    );

    // The same restart without the saved tuples (nor the checkpoint): the
    // servers drop SYNs.
    std::fs::remove_file(&file).expect("remove the saved tuples");
    std::fs::remove_file(socket.with_extension("fnat.walk")).expect("walk checkpoint");
    let before = paws_drops(&lab);
    let third = Tack::start(&lab.lb(), &profile);
    requests(&lab, 3000);
    let drops = paws_drops(&lab) - before;
    third.stop();
    assert!(drops > 0, "without quarantine: no PAWS drop");
}

#[test]
fn full_nat_restart_after_a_crash_resumes_past_the_ports_in_time_wait() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up();
    let (profile, socket) = lab.profile(1, SERVICES);
    let file = socket.with_extension("fnat");
    let walk = socket.with_extension("fnat.walk");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&walk);

    // The first instance opens and closes thousands of connections, then
    // is killed: it saves no tuples, only its last walk checkpoint stays.
    let first = Tack::start(&lab.lb(), &profile);
    burst(&lab);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(first);
    assert!(!file.exists(), "a killed instance saved tuples");
    let checkpoint = std::fs::read_to_string(&walk).expect("walk checkpoint");
    assert!(checkpoint.starts_with("checkpoint "), "{checkpoint}");

    // The next one resumes ahead of it: no SYN dropped, no request failed.
    let before = paws_drops(&lab);
    let mut second = Tack::start(&lab.lb(), &profile);
    let line = second.wait_for_line("resumed ahead", std::time::Duration::from_secs(1));
    assert!(!line.contains("whole port range"), "{line}");
    let (answered, failed) = requests(&lab, 3000);
    let drops = paws_drops(&lab) - before;
    assert_eq!(
        (answered, failed, drops),
        (3000, 0, 0),
        "answered, failed, PAWS drops ({checkpoint})"
    );

    // Killed again, without its checkpoint: the third walks from where a
    // fresh start does, over the first instance's tuples, and the servers
    // drop SYNs.
    drop(second);
    std::fs::remove_file(&walk).expect("remove the checkpoint");
    let before = paws_drops(&lab);
    let third = Tack::start(&lab.lb(), &profile);
    requests(&lab, 3000);
    let drops = paws_drops(&lab) - before;
    third.stop();
    assert!(drops > 0, "without the checkpoint: no PAWS drop");
}
