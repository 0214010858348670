//! The shard's open segment files: a budget of `open_files_max` file descriptors, and a
//! cache of the files of sealed segments within it.
//!
//! An active segment keeps its `.log` open for as long as it is active: its appender writes
//! through it. A sealed segment's file is opened when a read needs it and stays open while
//! the budget allows; when a file must be opened at the limit, the sealed segment file used
//! least recently that no read holds is closed to make room (reopened on its next use). Only
//! when every open file is active or in use does an open fail (`TooManyOpenFiles`). So a
//! shard with 20,000 sealed segments holds at most `open_files_max` descriptors, however
//! many of them consumers read.
//!
//! Index files are not counted here: they are opened and closed on use (`io`), and the
//! broker's descriptor budget keeps a reserve for them (`config`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use glommio::io::DmaFile;

use super::error::{io_error, Result, StorageError};
use super::io;

/// The budget, and the open files of sealed segments by last use.
pub struct OpenFiles {
    open: Cell<usize>,
    open_max: usize,
    /// Advances on every use of a sealed segment's file: its recency.
    tick: Cell<u64>,
    /// Open files of sealed segments, keyed by the tick of their last use (oldest first).
    /// An entry whose segment is gone is skipped and removed.
    idle: RefCell<BTreeMap<u64, Weak<SegmentFile>>>,
}

impl OpenFiles {
    pub fn new(open_max: usize) -> Rc<OpenFiles> {
        Rc::new(OpenFiles {
            open: Cell::new(0),
            open_max,
            tick: Cell::new(0),
            idle: RefCell::new(BTreeMap::new()),
        })
    }

    /// Files open now (active and sealed segments).
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Sealed segment files open now (the cache).
    pub fn cached(&self) -> usize {
        self.idle
            .borrow()
            .values()
            .filter(|slot| slot.upgrade().is_some_and(|slot| slot.is_open()))
            .count()
    }

    /// Reserves one open file. At the limit, closes the least recently used sealed segment
    /// file that no read holds; fails with `TooManyOpenFiles` if there is none.
    pub async fn permit(self: &Rc<Self>) -> Result<OpenFilePermit> {
        loop {
            let open = self.open.get();
            if open < self.open_max {
                self.open.set(open + 1);
                return Ok(OpenFilePermit {
                    files: self.clone(),
                });
            }
            let Some(evicted) = self.take_least_recently_used() else {
                return Err(StorageError::TooManyOpenFiles {
                    limit: self.open_max,
                });
            };
            // Its permit comes back once the close completes; another task may take the
            // slot meanwhile, so check again.
            let path = evicted.path.clone();
            if let Err(error) = evicted.close().await {
                tracing::warn!(path = %path.display(), %error, "closing a cached segment file");
            }
        }
    }

    /// Takes the file of the least recently used sealed segment that no read holds out of
    /// its segment (which reopens it on its next use).
    fn take_least_recently_used(&self) -> Option<Rc<SharedFile>> {
        let mut idle = self.idle.borrow_mut();
        let mut stale = Vec::new();
        let mut taken = None;
        for (&tick, slot) in idle.iter() {
            let Some(slot) = slot.upgrade() else {
                stale.push(tick);
                continue;
            };
            let mut file = slot.file.borrow_mut();
            match file.as_ref() {
                None => stale.push(tick),
                // Held by the slot alone: no read is using it.
                Some(open) if Rc::strong_count(open) == 1 => {
                    taken = file.take();
                    slot.last_used.set(None);
                    stale.push(tick);
                    break;
                }
                Some(_) => {}
            }
        }
        for tick in stale {
            idle.remove(&tick);
        }
        taken
    }

    fn next_tick(&self) -> u64 {
        let tick = self.tick.get() + 1;
        self.tick.set(tick);
        tick
    }
}

/// Held for as long as a file is open; gives its slot back on drop.
pub struct OpenFilePermit {
    files: Rc<OpenFiles>,
}

impl Drop for OpenFilePermit {
    fn drop(&mut self) {
        let open = &self.files.open;
        open.set(open.get().saturating_sub(1));
    }
}

/// A DMA file shared by a segment's appender and readers, counted against the shard's
/// open-file budget until the last handle is dropped.
pub struct SharedFile {
    pub file: DmaFile,
    pub path: PathBuf,
    _permit: OpenFilePermit,
}

impl SharedFile {
    pub async fn open(path: PathBuf, create: bool, permit: OpenFilePermit) -> Result<Rc<Self>> {
        let file = io::open_dma(&path, create).await?;
        Ok(Rc::new(SharedFile {
            file,
            path,
            _permit: permit,
        }))
    }

    /// Closes the file if this is its last handle; otherwise the last holder's drop closes it.
    pub async fn close(self: Rc<Self>) -> Result<()> {
        match Rc::try_unwrap(self) {
            Ok(shared) => shared
                .file
                .close()
                .await
                .map_err(io_error("close", &shared.path)),
            Err(_still_shared) => Ok(()),
        }
    }
}

/// One segment's `.log`, open or (sealed and evicted) closed.
pub struct SegmentFile {
    path: PathBuf,
    files: Rc<OpenFiles>,
    file: RefCell<Option<Rc<SharedFile>>>,
    /// Sealed segments never change again: their file may be closed while unused.
    sealed: Cell<bool>,
    /// This file's key in `OpenFiles::idle` while sealed and open.
    last_used: Cell<Option<u64>>,
    /// Held while reopening, so concurrent readers open the file once.
    reopening: async_lock::Mutex<()>,
}

impl SegmentFile {
    /// Opens (or creates) the file of a segment, which starts unsealed.
    pub async fn open(files: &Rc<OpenFiles>, path: PathBuf, create: bool) -> Result<Rc<Self>> {
        let permit = files.permit().await?;
        let file = SharedFile::open(path.clone(), create, permit).await?;
        Ok(Rc::new(SegmentFile {
            path,
            files: files.clone(),
            file: RefCell::new(Some(file)),
            sealed: Cell::new(false),
            last_used: Cell::new(None),
            reopening: async_lock::Mutex::new(()),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_open(&self) -> bool {
        self.file.borrow().is_some()
    }

    /// The open file, reopened if the cache closed it. Hold it for one operation only: a
    /// held file cannot be closed to make room for another.
    pub async fn get(self: &Rc<Self>) -> Result<Rc<SharedFile>> {
        if let Some(file) = self.current() {
            return Ok(file);
        }
        let _one_opener = self.reopening.lock().await;
        if let Some(file) = self.current() {
            return Ok(file);
        }
        let permit = self.files.permit().await?;
        let file = SharedFile::open(self.path.clone(), false, permit).await?;
        *self.file.borrow_mut() = Some(file.clone());
        self.touch();
        Ok(file)
    }

    fn current(self: &Rc<Self>) -> Option<Rc<SharedFile>> {
        let file = self.file.borrow().clone()?;
        self.touch();
        Some(file)
    }

    /// Marks a sealed segment's file as just used (most recently used in the cache).
    fn touch(self: &Rc<Self>) {
        if !self.sealed.get() || !self.is_open() {
            return;
        }
        let tick = self.files.next_tick();
        let mut idle = self.files.idle.borrow_mut();
        if let Some(old) = self.last_used.replace(Some(tick)) {
            idle.remove(&old);
        }
        idle.insert(tick, Rc::downgrade(self));
    }

    /// The segment will not change again: from now on its file may be closed while unused.
    pub fn seal(self: &Rc<Self>) {
        self.sealed.set(true);
        self.touch();
    }

    /// The segment is written again (truncation made it active): it keeps its file open.
    pub fn unseal(&self) {
        self.sealed.set(false);
        self.forget();
    }

    /// Closes a sealed segment's file now if nothing else holds it (a segment loaded at
    /// start, which may never be read).
    pub async fn release(&self) -> Result<()> {
        if !self.sealed.get() {
            return Ok(());
        }
        let unused = {
            let mut file = self.file.borrow_mut();
            match file.as_ref() {
                Some(open) if Rc::strong_count(open) == 1 => file.take(),
                _ => None,
            }
        };
        match unused {
            Some(file) => {
                self.forget();
                file.close().await
            }
            None => Ok(()),
        }
    }

    /// Closes the file (the segment is closed or deleted). A read still holding it keeps
    /// it open until it drops its handle.
    pub async fn close(&self) -> Result<()> {
        self.forget();
        let file = self.file.borrow_mut().take();
        match file {
            Some(file) => file.close().await,
            None => Ok(()),
        }
    }

    fn forget(&self) {
        if let Some(tick) = self.last_used.take() {
            if let Ok(mut idle) = self.files.idle.try_borrow_mut() {
                idle.remove(&tick);
            }
        }
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        self.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<Fut>(body: impl FnOnce(PathBuf) -> Fut + Send + 'static)
    where
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        crate::runtime::run_single("files-test", dir.clone(), move || body(dir)).expect("executor");
    }

    async fn sealed(files: &Rc<OpenFiles>, dir: &Path, name: &str) -> Rc<SegmentFile> {
        let slot = SegmentFile::open(files, dir.join(name), true)
            .await
            .expect("open");
        slot.seal();
        slot
    }

    #[test]
    fn the_least_recently_used_idle_sealed_file_makes_room() {
        run(|dir| async move {
            let files = OpenFiles::new(3);
            let active = SegmentFile::open(&files, dir.join("active"), true)
                .await
                .expect("open");
            let a = sealed(&files, &dir, "a").await;
            let b = sealed(&files, &dir, "b").await;
            assert_eq!((files.open(), files.cached()), (3, 2));
            // `a` was used after `b`, so `b` is the one closed for `c`.
            a.get().await.expect("a");
            let c = sealed(&files, &dir, "c").await;
            assert!(a.is_open() && !b.is_open() && c.is_open() && active.is_open());
            assert_eq!(files.open(), 3);
            // `b` reopens on use, closing the least recently used of `a` and `c` (`a`).
            b.get().await.expect("b reopens");
            assert!(!a.is_open() && b.is_open() && c.is_open());
            assert_eq!(files.open(), 3);
        });
    }

    #[test]
    fn a_file_in_use_or_active_is_never_closed_and_the_limit_holds() {
        run(|dir| async move {
            let files = OpenFiles::new(2);
            let active = SegmentFile::open(&files, dir.join("active"), true)
                .await
                .expect("open");
            let a = sealed(&files, &dir, "a").await;
            // A read holds `a`'s file: nothing can be closed, so a third open fails.
            let reading = a.get().await.expect("a");
            let refused = SegmentFile::open(&files, dir.join("b"), true).await;
            assert!(matches!(
                refused,
                Err(StorageError::TooManyOpenFiles { limit: 2 })
            ));
            assert!(active.is_open() && a.is_open());
            // Once the read is done, `a` makes room.
            drop(reading);
            let b = sealed(&files, &dir, "b").await;
            assert!(!a.is_open() && b.is_open());
            assert_eq!(files.open(), 2);
            // Closing and dropping segments gives their slots back.
            b.close().await.expect("close");
            drop(b);
            active.close().await.expect("close");
            assert_eq!(files.open(), 0);
            assert_eq!(files.cached(), 0);
        });
    }

    #[test]
    fn concurrent_readers_reopen_a_file_once() {
        run(|dir| async move {
            let files = OpenFiles::new(4);
            let a = sealed(&files, &dir, "a").await;
            a.release().await.expect("release");
            assert_eq!((files.open(), a.is_open()), (0, false));
            let (first, second) = futures_lite::future::zip(a.get(), a.get()).await;
            let (first, second) = (first.expect("first"), second.expect("second"));
            assert!(Rc::ptr_eq(&first, &second));
            assert_eq!(files.open(), 1);
        });
    }
}
