//! Indices of services and servers in one configuration snapshot (a leaf
//! module: the model, the schedulers and the tables all name them).

/// Index of a service in a [`crate::model::Config`] snapshot.
pub type ServiceIdx = u16;
/// Index of a real server in its service's pool.
pub type ServerIdx = u16;
