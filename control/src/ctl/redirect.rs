//! `tackctl redirects`: the redirect services (seed 000) as the appliance
//! runs them, each server with its URLs, directed address, backup, weight
//! and state, the SYN-proxied services, and the responder's and the SYN
//! proxy's counters summed over the workers.

use std::fmt::Write;

use crate::api::types as doc;
use crate::profile::{Profile, ServerSection, ServiceSection};
use crate::report::WorkerSnapshot;

/// The counters the view sums over the workers.
const COUNTERS: &[&str] = &[
    "redirect_syn_cookies",
    "redirect_found",
    "redirect_bad_request",
    "redirect_too_long",
    "drop_redirect_bad_cookie",
    "drop_redirect_ignored",
    "synproxy_syn_cookies",
    "synproxy_opened",
    "synproxy_joined",
    "drop_synproxy_bad_cookie",
    "drop_synproxy_ignored",
    "drop_synproxy_pending",
];

/// A server's HTTPS URL: its `https_url`, else its `url` with `https://`.
fn https_url(sv: &ServerSection) -> Option<String> {
    sv.https_url.clone().or_else(|| {
        sv.url
            .as_ref()
            .map(|u| u.replacen("http://", "https://", 1))
    })
}

/// The service's protocol, VIP and port as the other views write them.
fn vip(svc: &ServiceSection) -> String {
    let port = svc.port.map_or("*".to_string(), |p| p.to_string());
    match svc.vip {
        std::net::IpAddr::V6(a) => format!("{}/[{a}]:{port}", svc.protocol),
        a => format!("{}/{a}:{port}", svc.protocol),
    }
}

/// The view: `failing` tells whether a server's health check has it down.
pub(super) fn doc(
    profile: &Profile,
    failing: impl Fn(&str, &str) -> bool,
    snapshots: &[WorkerSnapshot],
) -> doc::Redirects {
    let services = profile
        .services
        .iter()
        .filter_map(|svc| svc.redirect.as_ref().map(|r| (svc, r)))
        .map(|(svc, r)| doc::RedirectService {
            name: svc.name.clone(),
            vip: vip(svc),
            secure_paths: r.secure_paths.clone(),
            backup_to_primary: r.backup_to_primary,
            servers: svc
                .servers
                .iter()
                .map(|sv| {
                    let name = sv.display_name();
                    let mut state = format!("{:?}", sv.state).to_lowercase();
                    if failing(&svc.name, &name) {
                        state.push_str(",failing");
                    }
                    doc::RedirectServer {
                        name,
                        weight: sv.weight,
                        state,
                        url: sv.url.clone(),
                        https_url: https_url(sv),
                        directed: sv.directed.map(|a| a.to_string()),
                        backup: sv.backup.clone(),
                    }
                })
                .collect(),
        })
        .collect();
    let syn_proxied = profile
        .services
        .iter()
        .filter(|svc| svc.syn_proxy)
        .map(|svc| format!("{} {}", svc.name, vip(svc)))
        .collect();
    let counters = COUNTERS
        .iter()
        .map(|name| {
            let total: u64 = snapshots
                .iter()
                .flat_map(|w| w.pipeline.iter())
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v)
                .sum();
            (name.to_string(), total)
        })
        .collect();
    doc::Redirects {
        services,
        syn_proxied,
        counters,
    }
}

/// The view's text, as `tackctl redirects` prints it.
pub fn render(d: &doc::Redirects) -> String {
    let mut s = String::new();
    for svc in &d.services {
        let _ = writeln!(
            s,
            "redirect {} {}  secure paths: {}  backup to primary: {}",
            svc.name,
            svc.vip,
            if svc.secure_paths.is_empty() {
                "-".to_string()
            } else {
                svc.secure_paths.join(" ")
            },
            if svc.backup_to_primary { "yes" } else { "no" }
        );
        let _ = writeln!(
            s,
            "  {:<12} {:>6} {:<14} {:<28} {:<28} {:<16} {:<12}",
            "server", "weight", "state", "url", "https url", "directed", "backup"
        );
        for sv in &svc.servers {
            let _ = writeln!(
                s,
                "  {:<12} {:>6} {:<14} {:<28} {:<28} {:<16} {:<12}",
                sv.name,
                sv.weight,
                sv.state,
                sv.url.as_deref().unwrap_or("-"),
                sv.https_url.as_deref().unwrap_or("-"),
                sv.directed.as_deref().unwrap_or("-"),
                sv.backup.as_deref().unwrap_or("-"),
            );
        }
    }
    if !d.syn_proxied.is_empty() {
        let _ = writeln!(s, "syn proxy: {}", d.syn_proxied.join(", "));
    }
    if s.is_empty() {
        s.push_str("no redirect or SYN-proxied service\n");
        return s;
    }
    for name in COUNTERS {
        let total = d.counters.get(*name).copied().unwrap_or(0);
        let _ = writeln!(s, "{name:<28} {total:>12}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"
ports:
  - { name: lan, device: "net_null0", addresses: [10.0.0.1/24] }
workers:
  - { lcore: 1, port: lan, queue: 0 }
services:
  - name: shop
    vip: 10.100.0.15
    port: 80
    servers:
      - { name: s1, address: 10.0.0.11, url: "http://10.100.0.31", directed: 10.100.0.31, backup: s2 }
      - { name: s2, address: 10.0.0.12, url: "http://10.100.0.32", https_url: "https://secure.example.com", state: down }
    redirect: { secure_paths: [/checkout/], backup_to_primary: true }
  - name: web
    vip: 10.100.0.16
    port: 80
    mode: fullnat
    syn_proxy: true
    local_addresses: [10.0.0.204]
    servers: [ { address: 10.0.0.13 } ]
"#;

    #[test]
    fn shows_each_server_of_a_redirect_service_and_sums_the_counters() {
        let p = Profile::parse(PROFILE).expect("profile");
        let w = |n: u64| WorkerSnapshot {
            pipeline: vec![("redirect_found", n), ("synproxy_opened", 2 * n)],
            ..WorkerSnapshot::default()
        };
        let text = render(&doc(
            &p,
            |svc, srv| svc == "shop" && srv == "s1",
            &[w(3), w(4)],
        ));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "redirect shop tcp/10.100.0.15:80  secure paths: /checkout/  backup to primary: yes"
            ),
            "{text}"
        );
        let s1: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            s1,
            [
                "s1",
                "1",
                "up,failing",
                "http://10.100.0.31",
                "https://10.100.0.31",
                "10.100.0.31",
                "s2"
            ],
            "{text}"
        );
        let s2: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            s2,
            [
                "s2",
                "1",
                "down",
                "http://10.100.0.32",
                "https://secure.example.com",
                "-",
                "-"
            ],
            "{text}"
        );
        assert!(
            text.contains("syn proxy: web tcp/10.100.0.16:80\n"),
            "{text}"
        );
        let total = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        assert_eq!(total("redirect_found").as_deref(), Some("7"), "{text}");
        assert_eq!(total("synproxy_opened").as_deref(), Some("14"), "{text}");
        assert_eq!(
            total("drop_synproxy_pending").as_deref(),
            Some("0"),
            "{text}"
        );
    }

    #[test]
    fn says_when_there_is_nothing_to_show() {
        let p = Profile::parse(&PROFILE.replace("redirect:", "x:")).map(|_| ());
        assert!(p.is_err(), "an unknown key is refused");
        let mut p = Profile::parse(PROFILE).expect("profile");
        p.services.retain(|s| s.redirect.is_none() && !s.syn_proxy);
        assert_eq!(
            render(&doc(&p, |_, _| false, &[])),
            "no redirect or SYN-proxied service\n"
        );
    }
}
