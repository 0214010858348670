//! State the storage engine keeps per shard: the batch cache, the open segment files (their
//! budget and the cache of sealed segments' files, `files`) and log ids. Lives in an `Rc` on
//! one executor; never crosses threads.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::cache::BatchCache;
use super::config::ShardStorageConfig;
use super::files::OpenFiles;

pub struct ShardStorage {
    pub cache: RefCell<BatchCache>,
    pub files: Rc<OpenFiles>,
    next_log_id: Cell<u64>,
}

impl ShardStorage {
    pub fn new(config: &ShardStorageConfig) -> Rc<ShardStorage> {
        Rc::new(ShardStorage {
            cache: RefCell::new(BatchCache::new(config.cache_bytes_max)),
            files: OpenFiles::new(config.open_files_max),
            next_log_id: Cell::new(0),
        })
    }

    /// Segment files open now.
    pub fn open_files(&self) -> usize {
        self.files.open()
    }

    /// A shard-unique id, the log's key in the batch cache.
    pub fn next_log_id(&self) -> u64 {
        let id = self.next_log_id.get();
        self.next_log_id.set(id + 1);
        id
    }
}
