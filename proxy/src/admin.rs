//! The admin view of the session tables (`GET /sessions` on the metrics
//! address): each backend's session-ID table with the server and the SSL
//! context each ID maps to, and each pass-through frontend's TLS session-ID and
//! affinity tables. Plain text, most recently used entries first.

use std::fmt::Write;
use std::time::Instant;

use crate::metrics::Registry;
use crate::persist::SessionTable;

/// Most entries listed per table.
const SHOWN: usize = 1000;

/// One table: a title line, then `row(id, server)` and the idle time per entry.
fn table(o: &mut String, title: &str, t: &SessionTable, row: impl Fn(&str, usize) -> String) {
    let shown = if t.len() > SHOWN {
        format!(" ({SHOWN} most recent shown)")
    } else {
        String::new()
    };
    let _ = writeln!(o, "# {title}: {} entries{shown}", t.len());
    for (id, server, idle) in t.entries(Instant::now(), SHOWN) {
        let _ = writeln!(o, "{}\tidle {}s", row(&id, server), idle.as_secs());
    }
}

/// The text of `/sessions`.
pub fn sessions(r: &Registry) -> String {
    let mut o = String::new();
    for (b, up) in r.backends.iter().zip(&r.pools) {
        let Some(t) = &b.sessions else { continue };
        table(
            &mut o,
            &format!("backend {} session IDs", b.name),
            t,
            |id, i| {
                let name = &b.servers[i].name;
                match up.context(i) {
                    Some(c) => format!("{id}\t{name}\ttls {} sni={}", c.addr, c.server_name()),
                    None => format!("{id}\t{name}\tplain {}", up.pool(i, false).addr()),
                }
            },
        );
    }
    for p in &r.passthrough {
        // Keys are `<backend index>/<ID or address>`.
        let row = |key: &str, i: usize| {
            let (b, id) = key.split_once('/').unwrap_or(("", key));
            let server = b
                .parse::<usize>()
                .ok()
                .and_then(|b| p.backends.get(b))
                .and_then(|b| b.servers.get(i).map(|s| format!("{}/{}", b.name, s.name)))
                .unwrap_or_else(|| format!("#{i}"));
            format!("{id}\t{server}")
        };
        let title = format!("passthrough {} TLS session IDs", p.name);
        table(&mut o, &title, &p.sessions, row);
        if let Some(t) = p.affinity_table() {
            table(&mut o, &format!("passthrough {} affinity", p.name), t, row);
        }
    }
    o
}
