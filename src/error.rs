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

    /// The store directory is held by another process (its `paxosd` is running).
    #[error(
        "store at {path} is locked by another process (is its paxosd still running? \
         stop it first, or read the log over the network)"
    )]
    Locked { path: PathBuf },

    /// The path holds no paxos store: missing, not a directory, not a sled store, or a sled
    /// store without a replica identity. `reason` says which.
    #[error("no paxos store at {path}: {reason}")]
    NotAStore { path: PathBuf, reason: String },

    /// The store was written in a layout version this build cannot read.
    #[error(
        "store at {path} has format version {found}, which this build does not read \
         (it reads version {supported}); migrate an older store through a snapshot: \
         `paxosctl snapshot save` from the cluster still running the old build, then \
         `paxosctl snapshot restore` into a new data directory with this one"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// An earlier write or sync failed, so the store refuses every later write (a failed
    /// fsync cannot be retried safely). Restart the replica.
    #[error("store at {path} is poisoned by an earlier failure ({reason}); restart the replica")]
    Poisoned { path: PathBuf, reason: String },

    /// sled reported a failure that is not an IO error (a sled bug or its own corruption
    /// check); `context` says what was being done.
    #[error("sled failed while {context}: {reason}")]
    Sled { context: String, reason: String },

    /// A value could not be encoded for the disk (postcard); `what` names it.
    #[error("could not encode {what}: {reason}")]
    Encode { what: String, reason: String },

    /// The replica's flusher (the thread that owns the store) failed or stopped: the
    /// replica stops, acknowledging nothing more.
    #[error("storage flusher: {0}")]
    Flusher(String),

    /// A snapshot file is damaged, truncated or not a snapshot; `offset` is the byte at
    /// which the bad part (header, chunk or trailer, named in `reason`) starts.
    #[error("snapshot {path}: at byte {offset}: {reason}")]
    Snapshot {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// A snapshot cannot be restored into this directory.
    #[error("cannot restore into {path}: {reason}")]
    RestoreTarget { path: PathBuf, reason: String },

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
