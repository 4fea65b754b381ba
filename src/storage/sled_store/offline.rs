//! Reading a stopped replica's store without changing it: [`read_offline`], behind
//! `paxosctl dump-log --data-dir DIR` (and `paxosctl snapshot` tests).

use super::{open_db, StoreMeta, Trees, CHECKPOINT_DIR, SLED_CONF_FILE, SLED_DATA_FILE, TREE_META};
use crate::storage::PersistentState;
use crate::Error;
use std::path::Path;

/// Reads a stopped replica's store without changing what it holds (for
/// `paxosctl dump-log --data-dir DIR`).
///
/// Never creates a store: a missing directory, or one that is not a paxos store, is
/// [`Error::NotAStore`] saying why. A store held by a running `paxosd` is
/// [`Error::Locked`]. Reads checkpoint segments like [`Storage::load`](crate::storage::Storage::load)
/// (and returns the same state), but never writes, removes or repairs one.
pub fn read_offline(dir: &Path) -> Result<(StoreMeta, PersistentState), Error> {
    let not_a_store = |reason: String| Error::NotAStore {
        path: dir.to_path_buf(),
        reason,
    };
    if !dir.exists() {
        return Err(not_a_store("the directory does not exist".to_string()));
    }
    if !dir.is_dir() {
        return Err(not_a_store("not a directory".to_string()));
    }
    if !dir.join(SLED_DATA_FILE).is_file() || !dir.join(SLED_CONF_FILE).is_file() {
        return Err(not_a_store(format!(
            "no sled `{SLED_DATA_FILE}`/`{SLED_CONF_FILE}` files"
        )));
    }
    let db = open_db(dir)?;
    let has_meta = db
        .tree_names()
        .iter()
        .any(|name| name.as_ref() == TREE_META.as_bytes());
    if !has_meta {
        return Err(not_a_store(format!(
            "a sled store without a `{TREE_META}` tree"
        )));
    }
    let trees = Trees::from_db(dir, db)?;
    let meta = trees
        .read_meta()?
        .ok_or_else(|| not_a_store(format!("no uid/cluster_id in `{TREE_META}`")))?;
    let state = trees.load_state(&dir.join(CHECKPOINT_DIR))?.state;
    Ok((meta, state))
}
