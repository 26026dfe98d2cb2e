//! Old-index → new-index maps between two snapshots, by identity.

use super::*;

/// Old-index → new-index correspondence between two snapshots, by identity.
#[derive(Debug, Clone, Default)]
pub struct ReloadMap {
    pub(super) services: Vec<Option<ServiceMap>>,
}

/// How one old service maps into the new snapshot.
#[derive(Debug, Clone)]
pub struct ServiceMap {
    /// The service's index in the new snapshot.
    pub new_index: ServiceIdx,
    /// New index of each old server (`None`: removed).
    pub servers: Vec<Option<ServerIdx>>,
    /// New index of each old local address (`None`: removed or no pool).
    pub local_addrs: Vec<Option<u16>>,
    /// Whether the persistence rule (key rule) changed, which invalidates the
    /// service's sticky keys.
    pub persistence_changed: bool,
}

impl ServiceMap {
    /// New index of old server `old` (`None`: removed).
    pub fn server(&self, old: ServerIdx) -> Option<ServerIdx> {
        self.servers.get(usize::from(old)).copied().flatten()
    }
}

impl ReloadMap {
    /// The new snapshot's view of old service `old`, `None` if it was removed.
    pub fn service(&self, old: ServiceIdx) -> Option<&ServiceMap> {
        self.services.get(usize::from(old)).and_then(Option::as_ref)
    }

    /// New index of old service `old`.
    pub fn service_index(&self, old: ServiceIdx) -> Option<ServiceIdx> {
        self.service(old).map(|m| m.new_index)
    }

    /// New index of old server `server` of old service `service`.
    pub fn server_index(&self, service: ServiceIdx, server: ServerIdx) -> Option<ServerIdx> {
        self.service(service).and_then(|m| m.server(server))
    }

    /// Whether every service and server keeps its index (only states,
    /// weights or other attributes changed).
    pub fn is_identity(&self) -> bool {
        self.services.iter().enumerate().all(|(i, m)| {
            m.as_ref().is_some_and(|m| {
                usize::from(m.new_index) == i
                    && m.servers
                        .iter()
                        .enumerate()
                        .all(|(j, s)| *s == Some(ServerIdx(j as u16)))
                    && m.local_addrs
                        .iter()
                        .enumerate()
                        .all(|(j, s)| *s == Some(j as u16))
                    && !m.persistence_changed
            })
        })
    }
}
