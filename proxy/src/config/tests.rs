//! Unit tests of the configuration: parsing, errors with field and line.

use super::*;

const GOOD: &str = r#"
frontends:
  - name: web
    bind: ["127.0.0.1:0"]
    backend: app
    priority_rules:
      - { class: -10, path_prefix: /api/ }
backends:
  - name: app
    balance: { algorithm: uri, depth: 2 }
    hash_type: consistent
    cookie: { name: SERVERID, mode: insert, indirect: true, nocache: true, maxidle: 30m }
    health_check: { type: http, path: /health, interval: 500ms, rise: 2, fall: 3 }
    servers:
      - { name: s1, address: "127.0.0.1:9001", weight: 2 }
      - { name: s2, address: "127.0.0.1:9002", cookie: b }
"#;

#[test]
fn parses_a_full_config() {
    let c = ProxyConfig::from_yaml_str(GOOD).unwrap();
    assert_eq!(
        c.backends[0].balance,
        Balance::Uri {
            whole: false,
            path_only: false,
            len: 0,
            depth: 2
        }
    );
    assert_eq!(
        c.backends[0].cookie.as_ref().unwrap().maxidle,
        Some(Dur(Duration::from_secs(1800)))
    );
    assert_eq!(c.backends[0].servers[0].weight, Weight(2));
    assert_eq!(
        c.backends[0].health_check.as_ref().unwrap().interval,
        Dur(Duration::from_millis(500))
    );
    assert_eq!(c.frontends[0].priority_rules[0].class, -10);
}

#[test]
fn unknown_key_names_field_and_line() {
    let bad = GOOD.replace("weight: 2", "wieght: 2");
    let e = ProxyConfig::from_yaml_str(&bad).unwrap_err().to_string();
    assert!(e.contains("wieght"), "{e}");
    assert!(e.contains("line 15"), "{e}");
    assert!(e.contains("backends[0].servers[0]"), "{e}");
}

#[test]
fn bad_values_are_refused_with_field() {
    let e = ProxyConfig::from_yaml_str(&GOOD.replace("weight: 2", "weight: 300"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("weight 300 out of range") && e.contains("line 15"),
        "{e}"
    );
    let e = ProxyConfig::from_yaml_str(&GOOD.replace("500ms", "5parsecs"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown unit") && e.contains("health_check"),
        "{e}"
    );
    let e = ProxyConfig::from_yaml_str(&GOOD.replace("backend: app", "backend: nope"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "frontends[0].backend: no backend named \"nope\" (line 5)"
    );
    let e = ProxyConfig::from_yaml_str(&GOOD.replace("cookie: b", "cookie: s1"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("backends[0].servers[1].cookie: cookie value \"s1\" is used by two servers"),
        "{e}"
    );
    let e = ProxyConfig::from_yaml_str(&GOOD.replace("mode: insert", "mode: prefix"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("backends[0].cookie.indirect: indirect only applies to mode insert"),
        "{e}"
    );
    let e = ProxyConfig::from_yaml_str(
        &GOOD.replace("backend: app\n", "backend: app\n    client_timeout: 0s\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("frontends[0].client_timeout: must be greater than zero"),
        "{e}"
    );
}

#[test]
fn profile_section_keeps_lines() {
    let indented: String = GOOD
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("  {l}\n")
            }
        })
        .collect();
    let profile = format!("cores: [1, 2]\nproxy:{indented}");
    assert!(ProxyConfig::from_yaml_str_or_profile(&profile).is_ok());
    let e = ProxyConfig::from_yaml_str_or_profile(&profile.replace("weight: 2", "wieght: 2"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("proxy.backends[0].servers[0]") && e.contains("line 16"),
        "{e}"
    );
}

#[test]
fn durations() {
    assert_eq!(Dur::parse("250").unwrap().0, Duration::from_millis(250));
    assert_eq!(Dur::parse("3s").unwrap().0, Duration::from_secs(3));
    assert_eq!(Dur::parse("2h").unwrap().0, Duration::from_secs(7200));
    assert!(Dur::parse("s").is_err());
    assert!(Dur::parse("1w").is_err());
}
