//! The writers' lock: an advisory lock on `gallery.lock` in the gallery home that keeps the
//! repair pass away from files that another process is still writing.
//!
//! Every operation that creates or removes gallery files (add, import, delete) holds it shared
//! from before its first file appears until its row is committed and its journal entry cleared.
//! The repair takes it exclusively, so while it runs no write is half done: every temp file,
//! every image without a row and every journal entry it finds was left by a process that died.
//! The kernel releases the lock of a killed process, so a crash never leaves the gallery locked.

use std::{
    fs::{File, OpenOptions, TryLockError},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::error::{io_err, GalleryError, Result};

/// How long a write waits for a running repair before giving up.
const SHARED_WAIT: Duration = Duration::from_secs(120);
/// Longest pause between two attempts to take the lock.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// The open lock file of one gallery handle.
pub(crate) struct WriterLock {
    file: File,
    path: PathBuf,
    /// Set once the file system refused to lock: writes then go ahead unlocked and the repair
    /// only touches files old enough not to be in use.
    unsupported: AtomicBool,
}

/// A held lock; dropping it releases the lock.
pub(crate) struct Held<'a>(&'a File);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The outcome of asking for the lock exclusively.
pub(crate) enum Exclusive<'a> {
    /// No write is in progress anywhere until this is dropped.
    Held(Held<'a>),
    /// Other processes kept writing for the whole wait.
    Busy,
    /// The file system cannot lock; nothing is known about other processes.
    Unsupported,
}

impl WriterLock {
    /// Opens (creating if needed, never truncating) the lock file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("cannot open the lock file", path))?;
        Ok(WriterLock {
            file,
            path: path.to_path_buf(),
            unsupported: AtomicBool::new(false),
        })
    }

    /// Takes the lock shared for one write, waiting while a repair runs.
    ///
    /// Returns `None` when the file system cannot lock (the write then goes ahead unlocked).
    pub fn shared(&self) -> Result<Option<Held<'_>>> {
        let deadline = Instant::now() + SHARED_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.file.try_lock_shared() {
                Ok(()) => return Ok(Some(Held(&self.file))),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
                Err(TryLockError::WouldBlock) => return Err(GalleryError::Busy(self.path.clone())),
                Err(TryLockError::Error(e)) => {
                    self.note_unsupported(&e);
                    return Ok(None);
                }
            }
        }
    }

    /// Tries to take the lock exclusively for up to `wait`.
    pub fn exclusive_within(&self, wait: Duration) -> Exclusive<'_> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.file.try_lock() {
                Ok(()) => return Exclusive::Held(Held(&self.file)),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
                Err(TryLockError::WouldBlock) => return Exclusive::Busy,
                Err(TryLockError::Error(e)) => {
                    self.note_unsupported(&e);
                    return Exclusive::Unsupported;
                }
            }
        }
    }

    /// Logs (once per handle) that locking does not work here.
    fn note_unsupported(&self, e: &std::io::Error) {
        if !self.unsupported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "the file system cannot lock the gallery; the repair will only touch files \
                 older than ten minutes"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_holders_keep_the_exclusive_lock_out_until_they_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gallery.lock");
        let a = WriterLock::open(&path).unwrap();
        let b = WriterLock::open(&path).unwrap();
        let held = a.shared().unwrap();
        assert!(held.is_some());
        assert!(b.shared().unwrap().is_some(), "shared holders coexist");
        assert!(matches!(
            b.exclusive_within(Duration::from_millis(20)),
            Exclusive::Busy
        ));
        drop(held);
        let Exclusive::Held(excl) = b.exclusive_within(Duration::from_millis(20)) else {
            panic!("the lock was free");
        };
        assert!(matches!(
            a.exclusive_within(Duration::ZERO),
            Exclusive::Busy
        ));
        drop(excl);
    }
}
