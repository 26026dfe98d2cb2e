//! Prometheus text exposition of the counters of frontends, backends, servers and
//! queues (`GET /metrics` on the configured address).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::Backend;
use crate::passthrough::{Passthrough, PassthroughStats};
use crate::proxy::Frontend;
use crate::tls::client::ContextStats;
use crate::tls::server::TlsStats;
use crate::upstream::Upstream;

fn v(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Reads one counter out of a `T`.
type Counter<T> = fn(&T) -> &AtomicU64;

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Counters of the frontends that terminate TLS.
fn tls_frontends(o: &mut String, frontends: &[Arc<Frontend>]) {
    let counters: [(&str, &str, Counter<TlsStats>); 8] = [
        ("handshakes_total", "TLS handshakes completed.", |s| {
            &s.handshakes
        }),
        (
            "resumed_total",
            "TLS handshakes that resumed a session (ticket or session ID).",
            |s| &s.resumed,
        ),
        (
            "tls13_total",
            "TLS handshakes that negotiated TLS 1.3.",
            |s| &s.tls13,
        ),
        (
            "alpn_h2_total",
            "TLS handshakes that chose h2 by ALPN.",
            |s| &s.alpn_h2,
        ),
        (
            "handshake_failures_total",
            "TLS handshakes that failed.",
            |s| &s.failures,
        ),
        (
            "handshake_timeouts_total",
            "TLS handshakes not completed within handshake_timeout.",
            |s| &s.timeouts,
        ),
        (
            "reloads_total",
            "Changed certificate or ticket-key files loaded.",
            |s| &s.reloads,
        ),
        (
            "reload_errors_total",
            "Changed files that could not be loaded (the previous ones stay in use).",
            |s| &s.reload_errors,
        ),
    ];
    for (name, help, get) in counters {
        head(
            o,
            &format!("tack_proxy_frontend_tls_{name}"),
            "counter",
            help,
        );
        for f in frontends {
            if let Some(t) = &f.tls {
                let _ = writeln!(
                    o,
                    "tack_proxy_frontend_tls_{name}{{frontend=\"{}\"}} {}",
                    f.name,
                    v(get(&t.stats))
                );
            }
        }
    }
}

/// What the proxy reports on: everything `Proxy::start` built.
#[derive(Debug)]
pub struct Registry {
    /// HTTP frontends.
    pub frontends: Vec<Arc<Frontend>>,
    /// Backends.
    pub backends: Vec<Arc<Backend>>,
    /// Each backend's connection pools (same order).
    pub pools: Vec<Arc<Upstream>>,
    /// Pass-through frontends.
    pub passthrough: Vec<Arc<Passthrough>>,
}

/// Render all counters in the Prometheus text format (version 0.0.4).
pub fn render(r: &Registry) -> String {
    let (frontends, backends, pools) = (&r.frontends[..], &r.backends[..], &r.pools[..]);
    let mut o = String::new();
    head(
        &mut o,
        "tack_proxy_frontend_connections_total",
        "counter",
        "Client connections accepted.",
    );
    for f in frontends {
        let _ = writeln!(
            o,
            "tack_proxy_frontend_connections_total{{frontend=\"{}\"}} {}",
            f.name,
            v(&f.stats.connections)
        );
    }
    head(
        &mut o,
        "tack_proxy_frontend_open_connections",
        "gauge",
        "Client connections open now.",
    );
    for f in frontends {
        let _ = writeln!(
            o,
            "tack_proxy_frontend_open_connections{{frontend=\"{}\"}} {}",
            f.name,
            v(&f.stats.open_connections)
        );
    }
    head(
        &mut o,
        "tack_proxy_frontend_requests_total",
        "counter",
        "Requests received.",
    );
    for f in frontends {
        let _ = writeln!(
            o,
            "tack_proxy_frontend_requests_total{{frontend=\"{}\"}} {}",
            f.name,
            v(&f.stats.requests)
        );
    }
    head(
        &mut o,
        "tack_proxy_frontend_responses_total",
        "counter",
        "Responses sent, by status class.",
    );
    for f in frontends {
        for (i, c) in CLASSES.iter().enumerate() {
            let _ = writeln!(
                o,
                "tack_proxy_frontend_responses_total{{frontend=\"{}\",code=\"{c}\"}} {}",
                f.name,
                v(&f.stats.responses[i])
            );
        }
    }
    head(
        &mut o,
        "tack_proxy_frontend_conn_errors_total",
        "counter",
        "Client connections that ended in a protocol or I/O error.",
    );
    for f in frontends {
        let _ = writeln!(
            o,
            "tack_proxy_frontend_conn_errors_total{{frontend=\"{}\"}} {}",
            f.name,
            v(&f.stats.conn_errors)
        );
    }
    head(
        &mut o,
        "tack_proxy_frontend_errors_total",
        "counter",
        "Requests the proxy answered with an error itself.",
    );
    for f in frontends {
        let _ = writeln!(
            o,
            "tack_proxy_frontend_errors_total{{frontend=\"{}\"}} {}",
            f.name,
            v(&f.stats.errors)
        );
    }
    tls_frontends(&mut o, frontends);

    let bcounters: [(&str, &str, Counter<Backend>); 12] = [
        ("requests_total", "Requests handled.", |b| &b.stats.requests),
        (
            "redispatches_total",
            "Requests sent elsewhere than persistence or the first choice asked.",
            |b| &b.stats.redispatches,
        ),
        ("retries_total", "Connection retries.", |b| &b.stats.retries),
        (
            "no_server_total",
            "Requests refused with 503 for lack of a server or queue slot.",
            |b| &b.stats.no_server,
        ),
        (
            "cookie_valid_total",
            "Requests with a persistence cookie for a usable server.",
            |b| &b.stats.cookie_valid,
        ),
        (
            "cookie_down_total",
            "Requests with a persistence cookie for a down server.",
            |b| &b.stats.cookie_down,
        ),
        (
            "cookie_invalid_total",
            "Requests with a persistence cookie matching no server.",
            |b| &b.stats.cookie_invalid,
        ),
        (
            "cookie_expired_total",
            "Requests with a cookie idle past maxidle.",
            |b| &b.stats.cookie_expired,
        ),
        (
            "cookie_old_total",
            "Requests with a cookie older than maxlife.",
            |b| &b.stats.cookie_old,
        ),
        (
            "cookie_set_total",
            "Persistence cookies inserted or rewritten.",
            |b| &b.stats.cookie_set,
        ),
        (
            "session_routed_total",
            "Requests routed by the session-ID table.",
            |b| &b.stats.session_routed,
        ),
        (
            "group_routed_total",
            "Requests routed by hash-group persistence.",
            |b| &b.stats.group_routed,
        ),
    ];
    for (name, help, get) in bcounters {
        head(
            &mut o,
            &format!("tack_proxy_backend_{name}"),
            "counter",
            help,
        );
        for b in backends {
            let _ = writeln!(
                o,
                "tack_proxy_backend_{name}{{backend=\"{}\"}} {}",
                b.name,
                v(get(b))
            );
        }
    }
    head(
        &mut o,
        "tack_proxy_session_table_entries",
        "gauge",
        "Entries in the session-ID table.",
    );
    for b in backends {
        if let Some(t) = &b.sessions {
            let _ = writeln!(
                o,
                "tack_proxy_session_table_entries{{backend=\"{}\"}} {}",
                b.name,
                t.len()
            );
        }
    }
    let scounters: [(&str, &str, Counter<crate::persist::SessionStats>); 4] = [
        ("learnt_total", "Session IDs learnt.", |s| &s.learnt),
        ("hits_total", "Lookups that found the session ID.", |s| {
            &s.hits
        }),
        ("expired_total", "Entries found expired.", |s| &s.expired),
        (
            "evicted_total",
            "Entries evicted because the table was full.",
            |s| &s.evicted,
        ),
    ];
    for (name, help, get) in scounters {
        head(
            &mut o,
            &format!("tack_proxy_session_table_{name}"),
            "counter",
            help,
        );
        for b in backends {
            if let Some(t) = &b.sessions {
                let _ = writeln!(
                    o,
                    "tack_proxy_session_table_{name}{{backend=\"{}\"}} {}",
                    b.name,
                    v(get(&t.stats))
                );
            }
        }
    }
    head(
        &mut o,
        "tack_proxy_hash_group_servers",
        "gauge",
        "Hash groups pinned to each server.",
    );
    for b in backends {
        if let Some(g) = &b.groups {
            for (i, n) in g.distribution(b.servers.len()).into_iter().enumerate() {
                let _ = writeln!(
                    o,
                    "tack_proxy_hash_group_servers{{backend=\"{}\",server=\"{}\"}} {n}",
                    b.name, b.servers[i].name
                );
            }
        }
    }

    head(
        &mut o,
        "tack_proxy_server_up",
        "gauge",
        "1 when the server is healthy and not in maintenance.",
    );
    for b in backends {
        for s in &b.servers {
            let _ = writeln!(
                o,
                "tack_proxy_server_up{{backend=\"{}\",server=\"{}\"}} {}",
                b.name,
                s.name,
                u8::from(s.usable_for_pinned())
            );
        }
    }
    head(
        &mut o,
        "tack_proxy_server_inflight",
        "gauge",
        "Requests being served by the server.",
    );
    for b in backends {
        for s in &b.servers {
            let _ = writeln!(
                o,
                "tack_proxy_server_inflight{{backend=\"{}\",server=\"{}\"}} {}",
                b.name,
                s.name,
                s.slots.inflight()
            );
        }
    }
    head(
        &mut o,
        "tack_proxy_queue_current",
        "gauge",
        "Requests waiting in the server's queue.",
    );
    for b in backends {
        for s in &b.servers {
            let _ = writeln!(
                o,
                "tack_proxy_queue_current{{backend=\"{}\",server=\"{}\"}} {}",
                b.name,
                s.name,
                s.slots.queued()
            );
        }
    }
    let qcounters: [(&str, &str, Counter<crate::qos::Slots>); 3] = [
        (
            "queue_dequeued_total",
            "Requests that waited and got a slot.",
            |q| &q.dequeued,
        ),
        (
            "queue_timeouts_total",
            "Requests that timed out in the queue (503).",
            |q| &q.timeouts,
        ),
        (
            "queue_full_total",
            "Requests refused by a full queue.",
            |q| &q.full,
        ),
    ];
    for (name, help, get) in qcounters {
        head(&mut o, &format!("tack_proxy_{name}"), "counter", help);
        for b in backends {
            for s in &b.servers {
                let _ = writeln!(
                    o,
                    "tack_proxy_{name}{{backend=\"{}\",server=\"{}\"}} {}",
                    b.name,
                    s.name,
                    v(get(&s.slots))
                );
            }
        }
    }
    let svcounters: [(&str, &str, Counter<crate::backend::ServerStats>); 5] = [
        ("requests_total", "Requests sent to the server.", |s| {
            &s.requests
        }),
        (
            "connect_errors_total",
            "Failed connections or exchanges with the server.",
            |s| &s.connect_errors,
        ),
        (
            "redirects_total",
            "Requests answered with a redirect to the server.",
            |s| &s.redirects,
        ),
        ("check_failures_total", "Failed health checks.", |s| {
            &s.check_failures
        }),
        ("downs_total", "Transitions to down.", |s| &s.downs),
    ];
    for (name, help, get) in svcounters {
        head(
            &mut o,
            &format!("tack_proxy_server_{name}"),
            "counter",
            help,
        );
        for b in backends {
            for s in &b.servers {
                let _ = writeln!(
                    o,
                    "tack_proxy_server_{name}{{backend=\"{}\",server=\"{}\"}} {}",
                    b.name,
                    s.name,
                    v(get(&s.stats))
                );
            }
        }
    }
    head(
        &mut o,
        "tack_proxy_server_responses_total",
        "counter",
        "Server responses by status class.",
    );
    for b in backends {
        for s in &b.servers {
            for (i, c) in CLASSES.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "tack_proxy_server_responses_total{{backend=\"{}\",server=\"{}\",code=\"{c}\"}} {}",
                    b.name,
                    s.name,
                    v(&s.stats.responses[i])
                );
            }
        }
    }
    server_contexts(&mut o, backends, pools);
    passthrough_frontends(&mut o, &r.passthrough);
    crate::pages::metrics::render(&mut o, frontends);
    o
}

/// Counters and tables of the pass-through frontends.
fn passthrough_frontends(o: &mut String, pts: &[Arc<Passthrough>]) {
    let counters: [(&str, &str, Counter<PassthroughStats>); 11] = [
        ("connections_total", "Connections accepted.", |s| {
            &s.connections
        }),
        (
            "bad_hello_total",
            "Connections closed: no valid ClientHello in time.",
            |s| &s.bad_hello,
        ),
        (
            "no_route_total",
            "Connections closed: no route for the server name.",
            |s| &s.no_route,
        ),
        (
            "no_server_total",
            "Connections closed: no server reachable.",
            |s| &s.no_server,
        ),
        (
            "session_routed_total",
            "Connections sent by the TLS session-ID table.",
            |s| &s.session_routed,
        ),
        (
            "affinity_routed_total",
            "Connections sent by client-address affinity.",
            |s| &s.affinity_routed,
        ),
        ("balanced_total", "Connections load balanced.", |s| {
            &s.balanced
        }),
        (
            "sessions_learnt_total",
            "TLS 1.2 session IDs learnt from ServerHellos.",
            |s| &s.sessions_learnt,
        ),
        (
            "tls13_total",
            "Connections whose server chose TLS 1.3.",
            |s| &s.tls13,
        ),
        (
            "idle_closed_total",
            "Connections closed after idle_timeout without traffic.",
            |s| &s.idle_closed,
        ),
        ("open_connections", "Connections open now.", |s| &s.open),
    ];
    for (name, help, get) in counters {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        head(o, &format!("tack_proxy_passthrough_{name}"), kind, help);
        for p in pts {
            let _ = writeln!(
                o,
                "tack_proxy_passthrough_{name}{{frontend=\"{}\"}} {}",
                p.name,
                v(get(&p.stats))
            );
        }
    }
    head(
        o,
        "tack_proxy_passthrough_table_entries",
        "gauge",
        "Entries in the TLS session-ID table and the affinity table.",
    );
    for p in pts {
        let _ = writeln!(
            o,
            "tack_proxy_passthrough_table_entries{{frontend=\"{}\",table=\"session_id\"}} {}",
            p.name,
            p.sessions.len()
        );
        if let Some(t) = p.affinity_table() {
            let _ = writeln!(
                o,
                "tack_proxy_passthrough_table_entries{{frontend=\"{}\",table=\"affinity\"}} {}",
                p.name,
                t.len()
            );
        }
    }
}

/// Counters of the servers' SSL contexts and their established tunnels.
fn server_contexts(o: &mut String, backends: &[Arc<Backend>], pools: &[Arc<Upstream>]) {
    let counters: [(&str, &str, Counter<ContextStats>); 3] = [
        (
            "handshakes_total",
            "TLS handshakes with the server (its SSL context).",
            |s| &s.handshakes,
        ),
        (
            "resumed_total",
            "Of which resumed an earlier session.",
            |s| &s.resumed,
        ),
        (
            "handshake_failures_total",
            "TLS handshakes with the server that failed.",
            |s| &s.failures,
        ),
    ];
    let each = |o: &mut String, f: &dyn Fn(&mut String, &str, &str, usize, &Upstream)| {
        for (b, up) in backends.iter().zip(pools) {
            for (i, s) in b.servers.iter().enumerate() {
                if up.context(i).is_some() {
                    f(o, &b.name, &s.name, i, up);
                }
            }
        }
    };
    for (name, help, get) in counters {
        head(o, &format!("tack_proxy_server_tls_{name}"), "counter", help);
        each(o, &|o, b, s, i, up| {
            if let Some(c) = up.context(i) {
                let _ = writeln!(
                    o,
                    "tack_proxy_server_tls_{name}{{backend=\"{b}\",server=\"{s}\"}} {}",
                    v(get(&c.stats))
                );
            }
        });
    }
    head(
        o,
        "tack_proxy_server_tls_tunnels_idle",
        "gauge",
        "Established TLS connections to the server waiting in its pool.",
    );
    each(o, &|o, b, s, i, up| {
        let _ = writeln!(
            o,
            "tack_proxy_server_tls_tunnels_idle{{backend=\"{b}\",server=\"{s}\"}} {}",
            up.pool(i, true).idle_streams()
        );
    });
}
