//! End to end: two namespaces joined by a veth pair, `tack` bound to one end
//! with `net_af_packet`, the real `ping` in the other. Every request answered.

mod common;

use common::*;

const PROFILE: &str = "\
eal:
  hugepages: false
  memory_mb: 256
  lcores: '0@0,1@0'
runtime:
  idle: backoff
mempool:
  mbufs: 2047
  cache: 64
ports:
  - name: lan
    device: net_af_packet0,iface=tk0
    addresses: [10.77.0.1/24, fd77::1/64]
workers:
  - lcore: 1
    port: lan
";

#[test]
fn ping_through_af_packet_is_answered_every_time() {
    require_root();
    let dir = TempDir::new();
    let app = Netns::new("tkapp");
    let cli = Netns::new("tkcli");
    veth(&app, "tk0", &cli, "c0");
    app.run(&["sysctl", "-qw", "net.ipv6.conf.tk0.disable_ipv6=1"]);
    cli.run(&["ip", "addr", "add", "10.77.0.2/24", "dev", "c0"]);
    cli.run(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd77::2/64",
        "dev",
        "c0",
        "nodad",
    ]);
    let profile = dir.path("ping.yaml");
    std::fs::write(&profile, PROFILE).unwrap();

    let tack = Tack::start(&app, &profile);
    let out = cli.try_run(&["ping", "-c", "20", "-i", "0.05", "-W", "2", "10.77.0.1"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("20 packets transmitted, 20 received"),
        "IPv4 ping:\n{text}"
    );
    let out6 = cli.try_run(&["ping", "-6", "-c", "5", "-i", "0.05", "-W", "2", "fd77::1"]);
    let text6 = String::from_utf8_lossy(&out6.stdout).to_string();
    assert!(
        text6.contains("5 packets transmitted, 5 received"),
        "IPv6 ping:\n{text6}"
    );
    let report = tack.stop();
    assert!(report.contains("port"), "counters printed:\n{report}");
    assert!(
        counter(&report, "rx_packets").unwrap_or(0) >= 25,
        "{report}"
    );
    assert!(
        counter(&report, "tx_packets").unwrap_or(0) >= 25,
        "{report}"
    );
}
