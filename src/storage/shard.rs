//! State the storage engine keeps per shard: the batch cache, the open-file budget and
//! log ids. Lives in an `Rc` on one executor; never crosses threads.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::cache::BatchCache;
use super::config::ShardStorageConfig;
use super::error::{Result, StorageError};

pub struct ShardStorage {
    pub cache: RefCell<BatchCache>,
    open_files: Rc<Cell<usize>>,
    open_files_max: usize,
    next_log_id: Cell<u64>,
}

impl ShardStorage {
    pub fn new(config: &ShardStorageConfig) -> Rc<ShardStorage> {
        Rc::new(ShardStorage {
            cache: RefCell::new(BatchCache::new(config.cache_bytes_max)),
            open_files: Rc::new(Cell::new(0)),
            open_files_max: config.open_files_max,
            next_log_id: Cell::new(0),
        })
    }

    /// Reserves one open file, or fails with `TooManyOpenFiles` at the limit.
    pub fn open_file_permit(&self) -> Result<OpenFilePermit> {
        let open = self.open_files.get();
        if open >= self.open_files_max {
            return Err(StorageError::TooManyOpenFiles {
                limit: self.open_files_max,
            });
        }
        self.open_files.set(open + 1);
        Ok(OpenFilePermit {
            open_files: self.open_files.clone(),
        })
    }

    pub fn open_files(&self) -> usize {
        self.open_files.get()
    }

    /// A shard-unique id, the log's key in the batch cache.
    pub fn next_log_id(&self) -> u64 {
        let id = self.next_log_id.get();
        self.next_log_id.set(id + 1);
        id
    }
}

/// Held for as long as a file is open; gives its slot back on drop.
pub struct OpenFilePermit {
    open_files: Rc<Cell<usize>>,
}

impl Drop for OpenFilePermit {
    fn drop(&mut self) {
        self.open_files.set(self.open_files.get().saturating_sub(1));
    }
}
