//! Indices of services and servers in one configuration snapshot (a leaf
//! module: the model, the schedulers and the tables all name them).
//!
//! Each is a position in one [`crate::model::Config`] and means nothing in
//! another: what crosses snapshots is named by identity
//! ([`crate::pipeline::ConnRecord`]).

use core::fmt;

macro_rules! index {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u16);

        impl From<$name> for usize {
            #[inline(always)]
            fn from(i: $name) -> usize {
                usize::from(i.0)
            }
        }

        impl From<u16> for $name {
            #[inline(always)]
            fn from(i: u16) -> $name {
                $name(i)
            }
        }

        impl TryFrom<usize> for $name {
            type Error = core::num::TryFromIntError;
            #[inline]
            fn try_from(i: usize) -> Result<$name, Self::Error> {
                u16::try_from(i).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

index! {
    /// Index of a service in a [`crate::model::Config`] snapshot.
    ServiceIdx
}

index! {
    /// Index of a real server in its service's pool.
    ServerIdx
}
