//! `tackctl`'s command words, as the operator types them, turned into one
//! management API request ([`Call`]).

use std::net::{IpAddr, SocketAddr};

use axum::http::Method;
use serde_json::{Value, json};

use crate::api::types::{ConnSelect, StickySelect};

/// What an answer holds, for printing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// [`crate::api::types::Status`].
    Status,
    /// [`crate::api::types::Counters`].
    Counters,
    /// Prometheus text.
    Metrics,
    /// A list of [`crate::api::types::Service`].
    Services,
    /// A list of [`crate::api::types::Neighbour`].
    Neighbours,
    /// [`crate::api::types::ConnectionList`].
    Connections,
    /// [`crate::api::types::ConnectionCount`].
    Count,
    /// A list of [`crate::api::types::StickyBinding`].
    Sticky,
    /// [`crate::api::types::Done`].
    Done,
    /// [`crate::api::types::Reloaded`].
    Reloaded,
    /// [`crate::api::types::Cluster`].
    Cluster,
    /// [`crate::api::types::Redirects`].
    Redirects,
}

/// One API request.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// What the answer holds.
    pub shape: Shape,
}

/// The usage text of the command words.
pub const USAGE: &str = "\
Commands:
  status                                   ports, workers, packet totals
  counters                                 every port, worker and control counter
  metrics                                  the Prometheus text of /metrics
  services                                 services, servers, weights, states, connections
  redirects                                redirect services' servers (URLs, directed, backup), SYN-proxied services, counters
  connections [N] [FILTER...]              list connections (first N per worker, default 20)
  connections count [FILTER...]            count connections
  connections flush [FILTER...]            remove connections (all without a filter)
      FILTER: service NAME | server NAME | client ADDR[/LEN]
  sticky [show [SERVICE]]                  sticky bindings
  sticky flush [SERVICE [KEY]]             remove sticky bindings (KEY as listed: ADDR/LEN)
  sticky SERVICE MINUTES [NC-SUBNET]       LocalDirector `sticky`: natural-class persistence
                                           (NC-SUBNET 172.16.0.0, or a first octet: 172)
  neighbours                               ARP/NDP table
  server SERVICE SERVER state up|drain|maint|down [weight N]
  server SERVICE SERVER weight N [state S]
  server SERVICE add ADDR[:PORT] [weight N] [name NAME] [state S]
  server SERVICE remove SERVER
  reload                                   re-read the profile file (lists what it reverts)
  cluster                                  cluster nodes (live, draining, down), sync counters
  cluster drain | activate                 this node takes no new flows (keeps its own) / takes them again
  cluster scheduler active | standby       this node owns the VIPs (entry: scheduler; the election calls it) / not
  top                                      live per-server view (see --interval, --iterations)";

/// Why the words are not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}\n\n{USAGE}")]
pub struct UsageError(pub String);

fn usage<T>(why: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(why.into()))
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?query` (no `?` for an empty query).
fn with_query<T: serde::Serialize>(path: &str, q: &T) -> String {
    match serde_urlencoded::to_string(q) {
        Ok(s) if !s.is_empty() => format!("{path}?{s}"),
        _ => path.to_string(),
    }
}

fn get(uri: impl Into<String>, shape: Shape) -> Call {
    Call {
        method: Method::GET,
        uri: uri.into(),
        body: None,
        shape,
    }
}

/// `service NAME`, `server NAME`, `client ADDR` pairs.
fn filters(words: &[&str]) -> Result<ConnSelect, UsageError> {
    let mut s = ConnSelect::default();
    let mut it = words.chunks(2);
    for pair in &mut it {
        match pair {
            ["service", v] => s.service = Some(v.to_string()),
            ["server", v] => s.server = Some(v.to_string()),
            ["client", v] => s.client = Some(v.to_string()),
            _ => return usage(format!("`{}` is not a filter", pair.join(" "))),
        }
    }
    Ok(s)
}

/// A server's `state S` and `weight N` words.
fn server_fields(
    words: &[&str],
    body: &mut serde_json::Map<String, Value>,
) -> Result<(), UsageError> {
    for pair in words.chunks(2) {
        match pair {
            ["state", s] => {
                if !["up", "drain", "maint", "down"].contains(s) {
                    return usage(format!("`{s}` is not a state (up, drain, maint, down)"));
                }
                body.insert("state".into(), json!(s));
            }
            ["weight", w] => match w.parse::<u16>() {
                Ok(w) => {
                    body.insert("weight".into(), json!(w));
                }
                Err(_) => return usage(format!("`{w}` is not a weight (0..65535)")),
            },
            ["name", n] => {
                body.insert("name".into(), json!(n));
            }
            _ => {
                return usage(format!(
                    "`{}` is not `state S`, `weight N` or `name N`",
                    pair.join(" ")
                ));
            }
        }
    }
    Ok(())
}

/// The request the command `words` makes.
pub fn parse(words: &[&str]) -> Result<Call, UsageError> {
    Ok(match words {
        [] | ["status"] => get("/status", Shape::Status),
        ["counters"] => get("/counters", Shape::Counters),
        ["metrics"] => get("/metrics", Shape::Metrics),
        ["services"] => get("/services", Shape::Services),
        ["redirects"] => get("/redirects", Shape::Redirects),
        ["neighbours"] | ["neighbors"] => get("/neighbours", Shape::Neighbours),
        ["cluster"] => get("/cluster", Shape::Cluster),
        ["cluster", what @ ("drain" | "activate")] => Call {
            method: Method::POST,
            uri: format!("/cluster/{what}"),
            body: None,
            shape: Shape::Done,
        },
        ["cluster", "scheduler", role @ ("active" | "standby")] => Call {
            method: Method::POST,
            uri: format!("/cluster/scheduler/{role}"),
            body: None,
            shape: Shape::Done,
        },
        ["reload"] => Call {
            method: Method::POST,
            uri: "/reload".into(),
            body: None,
            shape: Shape::Reloaded,
        },
        ["connections", "count", rest @ ..] => get(
            with_query("/connections/count", &filters(rest)?),
            Shape::Count,
        ),
        ["connections", "flush", rest @ ..] => Call {
            method: Method::DELETE,
            uri: with_query("/connections", &filters(rest)?),
            body: None,
            shape: Shape::Done,
        },
        ["connections", rest @ ..] => {
            let (limit, rest) = match rest.first().map(|n| n.parse::<u32>()) {
                Some(Ok(n)) => (Some(n), &rest[1..]),
                _ => (None, rest),
            };
            let mut uri = with_query("/connections", &filters(rest)?);
            if let Some(n) = limit {
                uri.push(if uri.contains('?') { '&' } else { '?' });
                uri.push_str(&format!("limit={n}"));
            }
            get(uri, Shape::Connections)
        }
        ["sticky"] | ["sticky", "show"] => get("/sticky", Shape::Sticky),
        ["sticky", "show", svc] => get(
            with_query(
                "/sticky",
                &StickySelect {
                    service: Some(svc.to_string()),
                    key: None,
                },
            ),
            Shape::Sticky,
        ),
        ["sticky", "flush", rest @ ..] if rest.len() <= 2 => Call {
            method: Method::DELETE,
            uri: with_query(
                "/sticky",
                &StickySelect {
                    service: rest.first().map(|s| s.to_string()),
                    key: rest.get(1).map(|s| s.to_string()),
                },
            ),
            body: None,
            shape: Shape::Done,
        },
        ["sticky", svc, minutes, rest @ ..] if rest.len() <= 1 => {
            let Ok(minutes) = minutes.parse::<u32>() else {
                return usage(format!("`{minutes}` is not a number of minutes"));
            };
            Call {
                method: Method::PUT,
                uri: format!("/services/{}/sticky", seg(svc)),
                body: Some(json!({ "minutes": minutes, "network": rest.first() })),
                shape: Shape::Done,
            }
        }
        ["server", svc, "add", addr, rest @ ..] => {
            let mut body = serde_json::Map::new();
            if let Ok(a) = addr.parse::<IpAddr>() {
                body.insert("address".into(), json!(a));
            } else if let Ok(sa) = addr.parse::<SocketAddr>() {
                body.insert("address".into(), json!(sa.ip()));
                body.insert("port".into(), json!(sa.port()));
            } else {
                return usage(format!(
                    "`{addr}` is not ADDRESS or ADDRESS:PORT ([v6]:port)"
                ));
            }
            server_fields(rest, &mut body)?;
            Call {
                method: Method::POST,
                uri: format!("/services/{}/servers", seg(svc)),
                body: Some(Value::Object(body)),
                shape: Shape::Done,
            }
        }
        ["server", svc, "remove", server] => Call {
            method: Method::DELETE,
            uri: format!("/services/{}/servers/{}", seg(svc), seg(server)),
            body: None,
            shape: Shape::Done,
        },
        ["server", svc, server, rest @ ..] if !rest.is_empty() => {
            let mut body = serde_json::Map::new();
            server_fields(rest, &mut body)?;
            if body.contains_key("name") {
                return usage("a server's name is given when it is added");
            }
            Call {
                method: Method::PATCH,
                uri: format!("/services/{}/servers/{}", seg(svc), seg(server)),
                body: Some(Value::Object(body)),
                shape: Shape::Done,
            }
        }
        _ => return usage(format!("unknown command `{}`", words.join(" "))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(line: &str) -> Call {
        let w: Vec<&str> = line.split_whitespace().collect();
        parse(&w).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn refused(line: &str) -> String {
        let w: Vec<&str> = line.split_whitespace().collect();
        parse(&w).unwrap_err().0
    }

    #[test]
    fn words_make_requests() {
        let c = call("server web s1 state drain weight 4");
        assert_eq!(
            (c.method, c.uri.as_str()),
            (Method::PATCH, "/services/web/servers/s1")
        );
        assert_eq!(c.body, Some(json!({"state": "drain", "weight": 4})));
        let c = call("server web add 10.0.0.14:8080 weight 3");
        assert_eq!(
            c.body,
            Some(json!({"address": "10.0.0.14", "port": 8080, "weight": 3}))
        );
        let c = call("connections 5 service web client 172.16.0.0/16");
        assert_eq!(
            c.uri,
            "/connections?service=web&client=172.16.0.0%2F16&limit=5"
        );
        assert_eq!(call("connections flush").uri, "/connections");
        assert_eq!(call("connections flush").method, Method::DELETE);
        assert_eq!(
            call("sticky flush web 172.16.0.0/16").uri,
            "/sticky?service=web&key=172.16.0.0%2F16"
        );
        let c = call("sticky web 5 172");
        assert_eq!(
            (c.method, c.uri.as_str()),
            (Method::PUT, "/services/web/sticky")
        );
        assert_eq!(c.body, Some(json!({"minutes": 5, "network": "172"})));
        assert_eq!(
            call("server my%web remove 10.0.0.1").uri,
            "/services/my%25web/servers/10.0.0.1"
        );
    }

    #[test]
    fn bad_words_are_refused_with_the_reason() {
        assert_eq!(
            refused("server web s1 state off"),
            "`off` is not a state (up, drain, maint, down)"
        );
        assert_eq!(
            refused("server web s1 weight 70000"),
            "`70000` is not a weight (0..65535)"
        );
        assert_eq!(
            refused("server web add nowhere"),
            "`nowhere` is not ADDRESS or ADDRESS:PORT ([v6]:port)"
        );
        assert_eq!(
            refused("sticky web soon"),
            "`soon` is not a number of minutes"
        );
        assert_eq!(
            refused("connections flush by web"),
            "`by web` is not a filter"
        );
        assert_eq!(refused("frobnicate"), "unknown command `frobnicate`");
    }
}
