//! The crate's error type: expected failures (bad config, bad frame, peer down, corrupt
//! record, IO) with context. A broken invariant is a panic, not an `Error`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; `field` names the offending field.
    #[error("invalid config: {field}: {reason}")]
    Config { field: String, reason: String },

    /// A stored record failed its checksum or could not be decoded.
    #[error("corrupt record in tree `{tree}` at {key}: {reason}")]
    Corrupt {
        tree: String,
        key: String,
        reason: String,
    },

    /// The store belongs to another replica or another cluster.
    #[error("store at {path} belongs to {found}, not {expected}")]
    WrongStore {
        path: PathBuf,
        found: String,
        expected: String,
    },

    /// Storage failed (fatal for a replica).
    #[error("storage error: {0}")]
    Storage(String),

    /// A frame on the wire was malformed or too large.
    #[error("bad frame: {0}")]
    Frame(String),

    #[error("io error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
