//! What a reload reverts: the changes made through the management API
//! since the profile file was last read, which the file read again does not
//! make itself. A reload applies the file as it is (the file is the
//! source of truth); its answer and `tack`'s log list these.

use crate::profile::{Profile, ServerSection, ServiceSection};

/// The runtime changes (`running` against `file`, the profile as last read)
/// that applying `new` reverts, one line each.
pub fn reverted(file: &Profile, running: &Profile, new: &Profile) -> Vec<String> {
    let mut out = Vec::new();
    for run in &running.services {
        let was = service(file, &run.name);
        let next = service(new, &run.name);
        let Some(was) = was else { continue };
        if run.persistence != was.persistence
            && next.is_none_or(|n| n.persistence != run.persistence)
        {
            out.push(format!("{}: persistence set at runtime", run.name));
        }
        for sv in &run.servers {
            let name = sv.display_name();
            let in_next = next.and_then(|n| server(n, &name));
            match server(was, &name) {
                None if in_next.is_none() => {
                    out.push(format!("{}/{name}: added at runtime, removed", run.name));
                }
                None => {}
                Some(old) => {
                    if sv.weight != old.weight && in_next.is_none_or(|n| n.weight != sv.weight) {
                        out.push(format!(
                            "{}/{name}: weight {} set at runtime, now {}",
                            run.name,
                            sv.weight,
                            in_next.map_or_else(|| "removed".into(), |n| n.weight.to_string())
                        ));
                    }
                    if sv.state != old.state && in_next.is_none_or(|n| n.state != sv.state) {
                        out.push(format!(
                            "{}/{name}: state {} set at runtime, now {}",
                            run.name,
                            state(sv.state),
                            in_next.map_or("removed", |n| state(n.state))
                        ));
                    }
                }
            }
        }
        for old in &was.servers {
            let name = old.display_name();
            if server(run, &name).is_none() && next.and_then(|n| server(n, &name)).is_some() {
                out.push(format!("{}/{name}: removed at runtime, back", run.name));
            }
        }
    }
    out
}

fn state(s: tack_dataplane::model::ServerState) -> &'static str {
    super::state_name(super::admin_state(s))
}

fn service<'a>(p: &'a Profile, name: &str) -> Option<&'a ServiceSection> {
    p.services.iter().find(|s| s.name == name)
}

fn server<'a>(s: &'a ServiceSection, name: &str) -> Option<&'a ServerSection> {
    s.servers.iter().find(|x| x.display_name() == name)
}

#[cfg(test)]
mod tests {
    use tack_dataplane::model::ServerState;

    use super::*;

    fn lab() -> Profile {
        Profile::parse(include_str!("../../../configs/lab.yaml")).unwrap()
    }

    #[test]
    fn a_reload_lists_the_runtime_changes_the_file_undoes() {
        let file = lab();
        let mut running = file.clone();
        let web = running
            .services
            .iter_mut()
            .find(|s| s.name == "web")
            .unwrap();
        web.servers[0].weight = 7;
        web.servers[1].state = ServerState::Drain;
        let mut extra = web.servers[0].clone();
        extra.name = Some("s9".into());
        extra.address = "10.0.0.19".parse().unwrap();
        web.servers.push(extra);
        web.servers.remove(2);
        // The file read again is the same: every runtime change is reverted.
        let lines = reverted(&file, &running, &file);
        assert_eq!(
            lines,
            [
                "web/s1: weight 7 set at runtime, now 1",
                "web/s2: state drain set at runtime, now up",
                "web/s9: added at runtime, removed",
                "web/s3: removed at runtime, back",
            ],
            "{lines:#?}"
        );
        // A file that makes the same changes reverts nothing.
        assert!(reverted(&file, &running, &running).is_empty());
        // No runtime change: nothing to revert, whatever the file says.
        let mut edited = file.clone();
        edited.services[0].servers[0].weight = 3;
        assert!(reverted(&file, &file, &edited).is_empty());
    }
}
