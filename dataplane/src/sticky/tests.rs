use super::*;

#[test]
fn keys() {
    let nc = ClientKeyRule::NaturalClass { networks: vec![] };
    let k = |s: &str| client_key(&nc, s.parse().unwrap());
    assert_eq!(k("172.16.1.5"), k("172.16.200.9"));
    assert_eq!(k("172.16.1.5").unwrap().to_string(), "172.16.0.0/16");
    assert_eq!(k("11.1.2.3").unwrap().to_string(), "11.0.0.0/8");
    assert_eq!(k("198.18.5.77").unwrap().to_string(), "198.18.5.0/24");
    assert_eq!(k("224.1.1.1"), None);
    assert_eq!(k("240.0.0.1"), None);
    assert_eq!(k("::1"), None);
    let limited = ClientKeyRule::NaturalClass {
        networks: vec![Ipv4Addr::new(172, 16, 0, 0)],
    };
    assert_eq!(
        client_key(&limited, "172.16.9.9".parse().unwrap())
            .unwrap()
            .prefix,
        16
    );
    assert_eq!(
        client_key(&limited, "172.17.9.9".parse().unwrap())
            .unwrap()
            .to_string(),
        "172.17.9.9/32"
    );
    let p = ClientKeyRule::Prefix(24);
    assert_eq!(
        client_key(&p, "10.1.2.3".parse().unwrap())
            .unwrap()
            .to_string(),
        "10.1.2.0/24"
    );
    assert_eq!(
        client_key(&p, "2001:db8::1".parse().unwrap())
            .unwrap()
            .prefix,
        24
    );
}
