//! What can be wrong with a profile: [`ProfileError`] for the operator (file,
//! line, field, problem), built from a [`FieldError`] (field and problem) found
//! by the checks, and [`MacAddrError`] for a MAC address that does not parse.

use std::fmt;

/// A profile that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    /// The file, if it came from one.
    pub file: Option<String>,
    /// The field at fault, e.g. `ports[1].device`.
    pub field: String,
    /// Its line (1-based), when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        if let Some(line) = self.line {
            write!(f, "{line}: ")?;
        } else if self.file.is_some() {
            write!(f, " ")?;
        }
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ProfileError {}

/// A field of a profile that cannot be used: its path and the problem.
/// Displayed `field: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field at fault, e.g. `services[0].mode`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A MAC address that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacAddrError {
    /// Not six two-digit hex bytes.
    #[error("`{0}` is not a MAC address (like 02:00:00:00:00:01)")]
    Syntax(String),
    /// A group (multicast or broadcast) address.
    #[error("`{0}` is a multicast MAC address")]
    Multicast(String),
}
