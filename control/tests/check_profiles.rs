//! `tack check` refuses every broken profile `tack run` refuses, with the
//! same one line naming the file, the line and the field, and exit code 2:
//! a table of mutations of `configs/lab.yaml`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{TempDir, tack_bin};

/// A mutation of the lab profile: replace `from` by `to` (`from` must occur),
/// then expect an error about `field` on the line holding `at` (in the
/// mutated text), whose message contains `says`.
struct Case {
    from: &'static str,
    to: &'static str,
    field: &'static str,
    at: &'static str,
    says: &'static str,
}

const fn case(
    from: &'static str,
    to: &'static str,
    field: &'static str,
    at: &'static str,
    says: &'static str,
) -> Case {
    Case {
        from,
        to,
        field,
        at,
        says,
    }
}

const LAB: &str = include_str!("../../configs/lab.yaml");

/// Text appended to the lab profile (it has no `tables` section).
const END: &str = "  socket: /run/tack/lab.sock\n";

const CASES: &[Case] = &[
    // Services, servers and addresses given twice.
    case(
        "  - name: echo",
        "  - name: web",
        "services[1].name",
        "  - name: web\n    vip: 10.100.0.10\n    protocol",
        "defined twice",
    ),
    case(
        "    protocol: udp\n    port: 5353",
        "    protocol: tcp\n    port: 80",
        "services[1]",
        "  - name: echo",
        "the same VIP, protocol and port as services[0]",
    ),
    case(
        "{ name: s2, address: 10.0.0.12, weight: 2 }",
        "{ name: s1, address: 10.0.0.12, weight: 2 }",
        "services[0].servers[1]",
        "{ name: s1, address: 10.0.0.12, weight: 2 }",
        "listed twice",
    ),
    case(
        "{ name: s2, address: 10.0.0.12, weight: 2 }",
        "{ name: s2, address: 10.0.0.11, weight: 2 }",
        "services[0].servers[1]",
        "{ name: s2, address: 10.0.0.11, weight: 2 }",
        "10.0.0.11",
    ),
    case(
        "[10.0.0.1/24, fd00::1/64]",
        "[10.0.0.1/24, 10.0.0.1/24]",
        "ports[0].addresses[1]",
        "addresses: [10.0.0.1/24, 10.0.0.1/24]",
        "listed twice",
    ),
    case(
        "[10.0.0.201, 10.0.0.202]",
        "[10.0.0.201, 10.0.0.201]",
        "services[2].local_addresses[1]",
        "[10.0.0.201, 10.0.0.201]",
        "listed twice",
    ),
    // Backups.
    case(
        "backup: s3",
        "backup: s9",
        "services[2].servers[0].backup",
        "backup: s9",
        "no server named `s9`",
    ),
    case(
        "backup: s3",
        "backup: s1",
        "services[2].servers[0].backup",
        "backup: s1",
        "its own backup",
    ),
    // Table sizes.
    case(
        END,
        "  socket: /run/tack/lab.sock\ntables:\n  connections: 0\n",
        "tables.connections",
        "  connections: 0",
        "out of range",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\ntables:\n  connections: 18446744073709551615\n",
        "tables.connections",
        "  connections: 1844",
        "out of range",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\ntables:\n  connections_v6: 0\n",
        "tables.connections_v6",
        "  connections_v6: 0",
        "out of range",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\ntables:\n  sticky: 0\n",
        "tables.sticky",
        "  sticky: 0",
        "out of range",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\ntables:\n  sticky: 18446744073709551615\n",
        "tables.sticky",
        "  sticky: 1844",
        "out of range",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\ntables:\n  neighbours: 0\n",
        "tables.neighbours",
        "  neighbours: 0",
        "must be 1..",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\ntables:\n  connections: -1\n",
        "tables.connections",
        "  connections: -1",
        "invalid type",
    ),
    // Full NAT's local addresses and ports.
    case(
        "    local_addresses: [\"fd00::201\"]\n",
        "",
        "services[4].local_addresses",
        "  - name: web6",
        "full NAT needs",
    ),
    case(
        "    local_addresses: [10.0.0.201, 10.0.0.202]\n",
        "    local_addresses: [10.0.0.201, 10.0.0.202]\n    local_ports: 100-nope\n",
        "services[2].local_ports",
        "local_ports: 100-nope",
        "not a range",
    ),
    case(
        "    local_addresses: [10.0.0.201, 10.0.0.202]\n",
        "    local_addresses: [10.0.0.201, 10.0.0.202]\n    local_ports: 2000-1000\n",
        "services[2].local_ports",
        "local_ports: 2000-1000",
        "empty or includes port 0",
    ),
    case(
        "    local_addresses: [10.0.0.201, 10.0.0.202]\n",
        "    local_addresses: [10.0.0.201, 10.0.0.202]\n    local_ports: 0-1000\n",
        "services[2].local_ports",
        "local_ports: 0-1000",
        "includes port 0",
    ),
    case(
        "    scheduler: wrr\n    mode: nat\n",
        "    scheduler: wrr\n    mode: nat\n    local_ports: 1024-2047\n",
        "services[0].local_ports",
        "local_ports: 1024-2047",
        "only used by full_nat",
    ),
    case(
        "local_addresses: [\"fd00::201\"]",
        "local_addresses: [10.0.0.203]",
        "services[4].local_addresses[0]",
        "local_addresses: [10.0.0.203]",
        "not in the VIP's address family",
    ),
    // Schedulers and VIPs.
    case(
        "    scheduler: maglev\n",
        "    scheduler: maglev\n    maglev_table_size: 65536\n",
        "services[3].maglev_table_size",
        "maglev_table_size: 65536",
        "prime",
    ),
    case(
        "    scheduler: wrr\n",
        "    scheduler: wrr\n    maglev_table_size: 65537\n",
        "services[0].maglev_table_size",
        "maglev_table_size: 65537",
        "only the maglev scheduler",
    ),
    case(
        "    vip: 10.100.0.12\n",
        "    vip: 224.0.0.5\n",
        "services[3].vip",
        "vip: 224.0.0.5",
        "multicast",
    ),
    case(
        "    vip: 10.100.0.10\n    port: 80\n",
        "    vip: 10.100.0.10\n    port: 0\n",
        "services[0].port",
        "    port: 0",
        "port 0",
    ),
    case(
        "{ name: s1, address: 10.0.0.11, weight: 1 }",
        "{ name: s1, address: 10.0.0.11, port: 0 }",
        "services[0].servers[0].port",
        "port: 0 }",
        "port 0",
    ),
    case(
        "{ name: s1, address: 10.0.0.11, weight: 1 }",
        "{ name: s1, address: 239.1.1.1, weight: 1 }",
        "services[0].servers[0].address",
        "239.1.1.1",
        "multicast",
    ),
    // Persistence.
    case(
        "{ timeout: 5, natural_class: true }",
        "{ timeout: 5, natural_class: true, prefix: 24 }",
        "services[2].persistence",
        "prefix: 24 }",
        "give one of",
    ),
    case(
        "{ timeout: 5, natural_class: true }",
        "{ timeout: 0, natural_class: true }",
        "services[2].persistence.timeout",
        "{ timeout: 0,",
        "out of range",
    ),
    case(
        "{ timeout: 5, natural_class: true }",
        "{ timeout: 5, prefix: 33 }",
        "services[2].persistence.prefix",
        "prefix: 33",
        "longer than /32",
    ),
    case(
        "{ timeout: 5, natural_class: true }",
        "{ timeout: 5, netmask: 255.0.255.0 }",
        "services[2].persistence.netmask",
        "255.0.255.0",
        "not contiguous",
    ),
    case(
        "{ timeout: 5, natural_class: true }",
        "{ timeout: 5, natural_class: true, networks: [172.16.1.0] }",
        "services[2].persistence.networks",
        "172.16.1.0",
        "not a class A, B or C network",
    ),
    case(
        "    local_addresses: [\"fd00::201\"]\n",
        "    local_addresses: [\"fd00::201\"]\n    persistence: { timeout: 5, natural_class: true }\n",
        "services[4].persistence.natural_class",
        "natural_class: true }\n    servers:\n      - { name: s1, address: \"fd00::11\" }",
        "IPv4 VIP",
    ),
    // Routes and the address families of servers.
    case(
        "via: 10.0.0.254 }",
        "via: 192.0.2.1 }",
        "routes[0].via",
        "via: 192.0.2.1",
        "not on-link",
    ),
    case(
        "via: \"fd00::fe\" }",
        "via: 10.0.0.254 }",
        "routes[1].via",
        "{ prefix: \"::/0\", via: 10.0.0.254 }",
        "not in the family",
    ),
    case(
        "{ name: s2, address: \"fd00::12\" }",
        "{ name: s2, address: 10.0.0.12 }",
        "services[4].servers[1].address",
        "{ name: s2, address: 10.0.0.12 }\n      - { name: s3, address: \"fd00::13\" }",
        "address family",
    ),
    // Ports as the pipeline sees them.
    case(
        "[10.0.0.1/24, fd00::1/64]",
        "[10.0.0.1/24, fd00::1/64, 255.255.255.255/32]",
        "ports[0].addresses[2]",
        "255.255.255.255/32]",
        "cannot be a port address",
    ),
    case(
        "    rx_queues: 2\n",
        "    rx_queues: 2\n    mtu: 500\n",
        "ports[0].mtu",
        "mtu: 500",
        "below the minimum",
    ),
    case(
        "    rx_queues: 2\n",
        "    rx_queues: 2\n    mtu: 1000\n",
        "ports[0].mtu",
        "mtu: 1000",
        "1280",
    ),
    // EAL lcores, which EAL would refuse with its usage text.
    case(
        "lcores: \"(0,1,2)@(0,1)\"",
        "lcores: \"(0,1,2@(0,1)\"",
        "eal.lcores",
        "lcores: \"(0,1,2@(0,1)\"",
        "`(0,1,2@(0,1)`",
    ),
    case(
        "lcores: \"(0,1,2)@(0,1)\"",
        "lcores: \"(0,1)@(0,1)\"",
        "workers[1].lcore",
        "{ lcore: 2, port: lan, queue: 1 }",
        "not in eal.lcores",
    ),
    case(
        "lcores: \"(0,1,2)@(0,1)\"",
        "lcores: \"(1,2)@(0,1)\"",
        "eal.lcores",
        "lcores: \"(1,2)@(0,1)\"",
        "main lcore 0",
    ),
    case(
        "lcores: \"(0,1,2)@(0,1)\"",
        "lcores: \"(0,1,200)@(0,1)\"",
        "eal.lcores",
        "lcores: \"(0,1,200)",
        "lcore 200 is out of range",
    ),
    // Memory that cannot hold the mempool.
    case(
        "  hugepages: false\n",
        "  hugepages: false\n  memory_mb: 8\n",
        "eal.memory_mb",
        "  memory_mb: 8",
        "cannot hold the mempool",
    ),
    // Redirect services.
    case(
        "      - { name: s1, address: 10.0.0.11, weight: 1 }",
        "      - { name: s1, address: 10.0.0.11, weight: 1, directed: 10.100.0.31 }",
        "services[0].servers[0].directed",
        "      - { name: s1, address: 10.0.0.11, weight: 1, directed",
        "for the servers of a redirect service",
    ),
    case(
        "    servers:\n      - { name: s1, address: 10.0.0.11, weight: 1 }",
        "    redirect: {}\n    servers:\n      - { name: s1, address: 10.0.0.11, weight: 1 }",
        "services[0].servers[0].url",
        "      - { name: s1, address: 10.0.0.11, weight: 1 }",
        "has no URL",
    ),
    case(
        "      - { name: s1, address: 10.0.0.11, weight: 1 }",
        "      - { name: s1, address: 10.0.0.11, weight: 1, url: \"ftp://x\" }",
        "services[0].servers[0].url",
        "      - { name: s1, address: 10.0.0.11, weight: 1, url",
        "is not an http:// or https:// URL",
    ),
    case(
        "    servers:\n      - { name: s1, address: 10.0.0.11, weight: 1 }\n      - { name: s2, address: 10.0.0.12, weight: 2 }\n      - { name: s3, address: 10.0.0.13, weight: 3 }",
        "    redirect: {}\n    servers:\n      - { name: s1, address: 10.0.0.11, url: \"http://a\", directed: 10.100.0.11 }",
        "services[0].servers[0].directed",
        "      - { name: s1, address: 10.0.0.11, url",
        "the same VIP, protocol and port as services[2]",
    ),
    // The SYN proxy: TCP NAT and full NAT only.
    case(
        "    protocol: udp\n    port: 5353",
        "    protocol: udp\n    port: 5353\n    syn_proxy: true",
        "services[1].syn_proxy",
        "    syn_proxy: true",
        "`syn_proxy` is for TCP services in NAT or full-NAT mode",
    ),
    // Static neighbours.
    case(
        END,
        "  socket: /run/tack/lab.sock\nneighbours:\n  - { port: wan, address: 10.0.0.11, mac: 02:00:00:00:00:0b }\n",
        "neighbours[0].port",
        "  - { port: wan",
        "no port named `wan`",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\nneighbours:\n  - { port: lan, address: 192.0.2.11, mac: 02:00:00:00:00:0b }\n",
        "neighbours[0].address",
        "  - { port: lan, address: 192.0.2.11",
        "not on-link on port `lan`",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\nneighbours:\n  - { port: lan, address: 10.0.0.1, mac: 02:00:00:00:00:0b }\n",
        "neighbours[0].address",
        "  - { port: lan, address: 10.0.0.1,",
        "an address of port `lan` itself",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\nneighbours:\n  - { port: lan, address: 10.0.0.11, mac: 01:00:5e:00:00:0b }\n",
        "neighbours[0].mac",
        "  - { port: lan, address: 10.0.0.11, mac: 01",
        "multicast",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\nneighbours:\n  - { port: lan, address: 10.0.0.11, mac: 02:00:00:00:00:0b }\n  - { port: lan, address: 10.0.0.11, mac: 02:00:00:00:00:0c }\n",
        "neighbours[1].address",
        "  - { port: lan, address: 10.0.0.11, mac: 02:00:00:00:00:0c }",
        "listed twice",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\nneighbours:\n  - { port: lan, address: 10.0.0.11, macaddr: 02:00:00:00:00:0b }\n",
        "neighbours[0]",
        "  - { port: lan, address: 10.0.0.11, macaddr",
        "unknown field `macaddr`",
    ),
    case(
        END,
        "  socket: /run/tack/lab.sock\ntables:\n  neighbours: 1\nneighbours:\n  - { port: lan, address: 10.0.0.11, mac: 02:00:00:00:00:0b }\n  - { port: lan, address: \"fd00::11\", mac: 02:00:00:00:00:0b }\n",
        "neighbours",
        "neighbours:\n  - { port: lan",
        "holds 1",
    ),
    // A key given twice, reported where it comes again.
    case(
        END,
        "  socket: /run/tack/lab.sock\nruntime:\n  burst: 16\n",
        "runtime",
        "runtime:\n  burst: 16",
        "given twice (first at line 16)",
    ),
    case(
        "    rx_queues: 2\n",
        "    rx_queues: 2\n    rx_queues: 1\n",
        "ports[0].rx_queues",
        "    rx_queues: 1",
        "given twice",
    ),
    // Health checks.
    case(
        "interval_ms: 1000, timeout_ms: 500",
        "interval_ms: 5, timeout_ms: 500",
        "services[0].health.interval_ms",
        "    health: {",
        "must be 10..3600000",
    ),
    case(
        "interval_ms: 1000, timeout_ms: 500",
        "interval_ms: 1000, timeout_ms: 5000",
        "services[0].health.timeout_ms",
        "    health: {",
        "must be 1..interval_ms",
    ),
    case(
        "check: http, path: /,",
        "check: tcp, expect: [200],",
        "services[0].health.check",
        "    health: {",
        "are for `http` and `https` checks",
    ),
    case(
        "check: http, path: /,",
        "check: http, path: nope,",
        "services[0].health.path",
        "    health: {",
        "must start with /",
    ),
    case(
        "check: http, path: /,",
        "check: http, path: /, rise: 0,",
        "services[0].health.rise",
        "    health: {",
        "given twice",
    ),
    case(
        "      - { name: s2, address: 10.0.0.12, weight: 2 }",
        "      - { name: s2, address: 10.0.0.12, weight: 2, health: { check: tcp, fall: 0 } }",
        "services[0].servers[1].health.fall",
        "      - { name: s2, address: 10.0.0.12, weight: 2, health",
        "must be 1..100",
    ),
    // The exception path.
    case(
        "    rx_queues: 2\n",
        "    rx_queues: 2\n    tap: a-name-far-too-long\n",
        "ports[0].tap",
        "    tap: a-name",
        "not an interface name",
    ),
    case(
        "exception:\n  enabled: true\n",
        "exception:\n  enabled: true\n  burst: 0\n",
        "exception.burst",
        "  burst: 0",
        "at least 1",
    ),
];

/// The 1-based line of the first line of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} is not in the mutated profile"));
    text[..at].matches('\n').count() + 1
}

/// Runs `tack SUBCOMMAND --config path`; returns (exit code, stdout, stderr).
fn tack(subcommand: &str, path: &Path) -> (i32, String, String) {
    let out = Command::new(tack_bin())
        .args([subcommand, "--config"])
        .arg(path)
        .output()
        .expect("spawn tack");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "tack panicked: {stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn the_lab_profile_checks() {
    let dir = TempDir::new();
    let path = dir.path("lab.yaml");
    std::fs::write(&path, LAB).unwrap();
    let (code, stdout, stderr) = tack("check", &path);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
}

/// Static neighbours on the lab's port check, IPv4 and IPv6.
#[test]
fn static_neighbours_check() {
    let dir = TempDir::new();
    let path = dir.path("lab-neighbours.yaml");
    let text = format!(
        "{LAB}neighbours:\n  - {{ port: lan, address: 10.0.0.11, mac: 02:00:00:00:00:0b }}\n  - {{ port: lan, address: \"fd00::11\", mac: 02:00:00:00:00:0b }}\n"
    );
    std::fs::write(&path, text).unwrap();
    let (code, stdout, stderr) = tack("check", &path);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
}

/// Each broken profile: `tack check` refuses it with exit code 2 and one
/// line `FILE:LINE: FIELD: ...`, and `tack run` refuses it with the same
/// line and code before it starts anything (no DPDK, no socket).
#[test]
fn check_refuses_what_run_refuses() {
    assert!(CASES.len() >= 30);
    let dir = TempDir::new();
    let mut failures = Vec::new();
    for (i, c) in CASES.iter().enumerate() {
        assert!(
            LAB.contains(c.from),
            "case {i}: {:?} is not in lab.yaml",
            c.from
        );
        let text = LAB.replacen(c.from, c.to, 1);
        let path = dir.path(&format!("case{i}.yaml"));
        std::fs::write(&path, &text).unwrap();
        let want = format!("{}:{}: {}: ", path.display(), line_of(&text, c.at), c.field);
        let (code, stdout, stderr) = tack("check", &path);
        let line = stderr.trim_end();
        if code != 2 || line.lines().count() != 1 || !line.contains(&want) || !line.contains(c.says)
        {
            failures.push(format!(
                "case {i} ({} -> {}): want exit 2 and `{want}...{}`, got exit {code}: {stderr}{stdout}",
                c.from.trim(),
                c.to.trim(),
                c.says
            ));
            continue;
        }
        let (run_code, _, run_stderr) = tack("run", &path);
        if run_code != 2 || run_stderr != stderr {
            failures.push(format!(
                "case {i}: `tack run` gave exit {run_code}: {run_stderr} (check: {stderr})"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
