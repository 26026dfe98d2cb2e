//! Side by side with HAProxy (Debian's 2.6) on the same backends: the `Set-Cookie`
//! headers match for the same configuration, and cookies issued by one route to the
//! same server through the other.

mod support;

use std::net::SocketAddr;

use support::nginx::free_port;
use support::*;

/// `curl -si` a URL with a fresh client; returns (body, headers as (lowercase name, value)).
async fn curl(url: &str, cookie: Option<&str>) -> (String, Vec<(String, String)>) {
    let mut args = vec!["-si".to_string(), url.to_string()];
    if let Some(c) = cookie {
        args.push("-H".into());
        args.push(format!("Cookie: {c}"));
    }
    let out = run_cmd("curl", args).await;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (body.to_string(), headers)
}

fn header_all(h: &[(String, String)], name: &str) -> Vec<String> {
    h.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

/// Split `NAME=srv|last|first; attrs` into (`NAME=srv`, dates, `; attrs`).
fn split_dates(sc: &str) -> (String, Vec<u64>, String) {
    let (nv, attrs) = sc
        .split_once(';')
        .map(|(a, b)| (a.to_string(), format!(";{b}")))
        .unwrap_or((sc.to_string(), String::new()));
    let mut parts = nv.split('|');
    let head = parts.next().unwrap().to_string();
    let dates = parts
        .map(|d| u64::from(tack_proxy::cookie::b64tos30(d).expect("date field")) << 2)
        .collect();
    (head, dates, attrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_matches_haproxy_and_cookies_are_interchangeable() {
    require_tool("curl");
    let s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let (hp_ins, hp_pfx, hp_rw) = (free_port(), free_port(), free_port());
    let hcfg = format!(
        "global\n    nbthread 1\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend ins\n    bind 127.0.0.1:{hp_ins}\n    default_backend ins\n\
         frontend pfx\n    bind 127.0.0.1:{hp_pfx}\n    default_backend pfx\n\
         frontend rw\n    bind 127.0.0.1:{hp_rw}\n    default_backend rw\n\
         backend ins\n    balance roundrobin\n    cookie SERVERID insert indirect nocache httponly secure domain .example.test maxidle 30m maxlife 8h\n    server s1 {a1} cookie c1\n    server s2 {a2} cookie c2\n\
         backend pfx\n    balance roundrobin\n    cookie SRVCK prefix\n    server s1 {a1} cookie c1\n    server s2 {a2} cookie c2\n\
         backend rw\n    balance roundrobin\n    cookie SRVCK rewrite\n    server s1 {a1} cookie c1\n    server s2 {a2} cookie c2\n",
        a1 = s1.addr,
        a2 = s2.addr
    );
    let (_hp, _dir) = start_haproxy(&hcfg, &[hp_ins, hp_pfx, hp_rw]).await;
    let servers = format!(
        "    servers:\n      - {{ name: s1, address: \"{}\", cookie: c1 }}\n      - {{ name: s2, address: \"{}\", cookie: c2 }}\n",
        s1.addr, s2.addr
    );
    let tcfg = format!(
        "frontends:\n  - {{ name: ins, bind: [\"127.0.0.1:0\"], backend: ins, access_log: false }}\n  - {{ name: pfx, bind: [\"127.0.0.1:0\"], backend: pfx, access_log: false }}\n  - {{ name: rw, bind: [\"127.0.0.1:0\"], backend: rw, access_log: false }}\n\
         backends:\n  - name: ins\n    cookie: {{ name: SERVERID, mode: insert, indirect: true, nocache: true, httponly: true, secure: true, domain: [.example.test], maxidle: 30m, maxlife: 8h }}\n{servers}\
         \x20 - name: pfx\n    cookie: {{ name: SRVCK, mode: prefix }}\n{servers}\
         \x20 - name: rw\n    cookie: {{ name: SRVCK, mode: rewrite }}\n{servers}"
    );
    let proxy = start_proxy(&tcfg).await;
    let t_ins = proxy.local_addr("ins").unwrap();
    let hp = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };

    // Insert mode: fresh clients against both.
    for _ in 0..2 {
        let (hb, hh) = curl(&format!("http://{}/static/a", hp(hp_ins)), None).await;
        let (tb, th) = curl(&format!("http://{t_ins}/static/a"), None).await;
        let hsc = header_all(&hh, "set-cookie");
        let tsc = header_all(&th, "set-cookie");
        assert_eq!(
            (hsc.len(), tsc.len()),
            (1, 1),
            "haproxy {hh:?}\ntack {th:?}"
        );
        let (hhead, hdates, hattrs) = split_dates(&hsc[0]);
        let (thead, tdates, tattrs) = split_dates(&tsc[0]);
        let cookie_of = |b: &str| if b == "s1" { "c1" } else { "c2" };
        assert_eq!(hhead, format!("SERVERID={}", cookie_of(&hb)));
        assert_eq!(thead, format!("SERVERID={}", cookie_of(&tb)));
        assert_eq!(
            hattrs, tattrs,
            "attributes differ: haproxy {:?} tack {:?}",
            hsc[0], tsc[0]
        );
        assert_eq!(hattrs, "; path=/; domain=.example.test; HttpOnly; Secure");
        assert_eq!((hdates.len(), tdates.len()), (2, 2));
        for (h, t) in hdates.iter().zip(&tdates) {
            assert!(
                h.abs_diff(*t) <= 4,
                "dates differ: haproxy {:?} tack {:?}",
                hsc[0],
                tsc[0]
            );
        }
        assert_eq!(
            header_all(&hh, "cache-control"),
            header_all(&th, "cache-control")
        );
        assert_eq!(header_all(&th, "cache-control"), vec!["private"]);
        // Without a validator or freshness information neither marks it private.
        let (_, hh0) = curl(&format!("http://{}/a", hp(hp_ins)), None).await;
        let (_, th0) = curl(&format!("http://{t_ins}/a"), None).await;
        assert_eq!(
            header_all(&hh0, "cache-control"),
            header_all(&th0, "cache-control")
        );
        assert!(header_all(&th0, "cache-control").is_empty());

        // HAProxy's cookie through tack-proxy reaches the same server, and back.
        let hval = hsc[0].split(';').next().unwrap().to_string();
        let (tb2, th2) = curl(&format!("http://{t_ins}/b"), Some(&hval)).await;
        assert_eq!(
            tb2, hb,
            "HAProxy cookie {hval} routed elsewhere by tack-proxy"
        );
        let _ = th2;
        let tval = tsc[0].split(';').next().unwrap().to_string();
        let (hb2, _) = curl(&format!("http://{}/b", hp(hp_ins)), Some(&tval)).await;
        assert_eq!(
            hb2, tb,
            "tack-proxy cookie {tval} routed elsewhere by HAProxy"
        );
    }

    // Prefix and rewrite modes: the server sets SRVCK, both proxies rewrite it alike.
    for (hport, fe) in [(hp_pfx, "pfx"), (hp_rw, "rw")] {
        let (hb, hh) = curl(&format!("http://{}/setck?v=abc", hp(hport)), None).await;
        let (tb, th) = curl(
            &format!("http://{}/setck?v=abc", proxy.local_addr(fe).unwrap()),
            None,
        )
        .await;
        let norm = |b: &str, v: &str| v.replace(if b == "s1" { "c1" } else { "c2" }, "<srv>");
        let hsc: Vec<String> = header_all(&hh, "set-cookie")
            .iter()
            .map(|v| norm(&hb, v))
            .collect();
        let tsc: Vec<String> = header_all(&th, "set-cookie")
            .iter()
            .map(|v| norm(&tb, v))
            .collect();
        assert_eq!(hsc, tsc, "{fe}: haproxy {hh:?}\ntack {th:?}");
        assert!(!hsc.is_empty());
        // The HAProxy-rewritten cookie routes to the same server through tack-proxy.
        let hval = header_all(&hh, "set-cookie")[0]
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let (tb2, _) = curl(
            &format!("http://{}/c", proxy.local_addr(fe).unwrap()),
            Some(&hval),
        )
        .await;
        assert_eq!(tb2, hb, "{fe}: {hval}");
    }
    // In prefix mode the server gets its own value back without the prefix.
    let last = s1
        .seen()
        .into_iter()
        .chain(s2.seen())
        .filter(|s| s.uri == "/c" && s.cookie.starts_with("SRVCK="))
        .map(|s| s.cookie)
        .collect::<Vec<_>>();
    assert!(last.iter().any(|c| c == "SRVCK=abc"), "{last:?}");
    proxy.shutdown().await;
}
