//! Making a sled 0.34 store durable: `Db::flush()` is only `sync_file_range` (it
//! survives `kill -9`, not a power loss), and values over ~128 KiB live in blob files sled
//! never fsyncs. [`Durability::sync`] flushes sled, fsyncs every blob file it has not
//! synced yet (and the blob directory), then `sync_data()`s sled's data file `db`: what
//! `persist` calls once per batch before it returns.

use super::{sled_error, SLED_BLOBS_DIR, SLED_DATA_FILE};
use crate::Error;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

/// The files `sync` must reach, opened once.
pub(super) struct Durability {
    /// sled's data file, opened a second time so it can be `sync_data`ed.
    data_file: File,
    pub(super) blobs: BlobSync,
}

impl Durability {
    pub(super) fn open(dir: &Path) -> Result<Durability, Error> {
        let data_file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(SLED_DATA_FILE))
            .map_err(|e| Error::io(format!("opening sled data file in {}", dir.display()), e))?;
        Ok(Durability {
            data_file,
            blobs: BlobSync::new(dir.join(SLED_BLOBS_DIR)),
        })
    }

    /// Flushes sled and forces its files to stable storage.
    pub(super) fn sync(&mut self, db: &sled::Db) -> Result<(), Error> {
        db.flush().map_err(|e| sled_error("flushing sled", e))?;
        self.blobs
            .sync_new()
            .map_err(|e| Error::io("syncing sled blob files", e))?;
        self.data_file
            .sync_data()
            .map_err(|e| Error::io("sync_data on sled data file", e))
    }
}

/// Makes sled's blob files durable: sled 0.34 writes values over ~128 KiB to
/// `blobs/<lsn>` without fsync, so each new one is synced once (and the directory with it).
pub(super) struct BlobSync {
    dir: PathBuf,
    pub(super) synced: HashSet<OsString>,
}

impl BlobSync {
    fn new(dir: PathBuf) -> BlobSync {
        BlobSync {
            dir,
            synced: HashSet::new(),
        }
    }

    fn sync_new(&mut self) -> std::io::Result<()> {
        let mut present = HashSet::new();
        let mut synced_any = false;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if !self.synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_data()?,
                    // sled removed it (blob gc) between read_dir and open.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                synced_any = true;
            }
            present.insert(name);
        }
        if synced_any {
            File::open(&self.dir)?.sync_all()?;
        }
        self.synced = present;
        Ok(())
    }
}
