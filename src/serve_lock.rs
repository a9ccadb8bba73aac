//! The lock a running server holds on its data directory (`serve.lock`):
//! held by `serve` for its whole life, by `restore`, `retention purge` and
//! `store migrate` while they run, and by an `--offline` bulk contact
//! import for its whole run (a first load in one transaction, or moves with
//! the number indexes set aside; see `contacts::store`).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The lock file a running server holds in its data directory.
pub const LOCK_FILE: &str = "serve.lock";

/// An exclusive lock on a data directory (released when dropped): on
/// `serve.lock` and on the directory itself, so that deleting the lock
/// file (a clean-up script) does not let a second server take a new one
/// and write the same stores (found by review).
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
    _dir: File,
}

/// Locks the data directory itself; `None` while another process holds it.
fn lock_dir(data_dir: &Path) -> std::io::Result<Option<File>> {
    let dir = File::open(data_dir)?;
    match dir.try_lock() {
        Ok(()) => Ok(Some(dir)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(err)) => Err(err),
    }
}

impl ServeLock {
    /// Takes the lock, or fails naming who holds it.
    ///
    /// # Errors
    /// When another process (a running server) holds it, or the file cannot be made.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<ServeLock> {
        crate::private::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
        let (file, path) = open(data_dir)
            .with_context(|| format!("cannot open {}", lock_path(data_dir).display()))?;
        let held = match file.try_lock() {
            Ok(()) => {
                lock_dir(data_dir).with_context(|| format!("cannot lock {}", data_dir.display()))?
            }
            Err(std::fs::TryLockError::WouldBlock) => None,
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
        };
        match held {
            Some(dir) => Ok(ServeLock {
                _file: file,
                _dir: dir,
            }),
            None => bail!(
                "data_dir {} is in use by another dialgate process holding {} (a running `dialgate serve`, a restore, a retention purge, or an --offline bulk import): stop the server first (e.g. systemctl stop dialgate), or wait for the command to finish",
                data_dir.display(),
                path.display()
            ),
        }
    }

    /// Takes the lock if no one holds it: `None` while a server (or
    /// anything else) holds it. Only the CLI's `--offline` imports call
    /// it, in their own process (with Linux's `flock`, a second open in
    /// the process holding the lock is refused too; the test below holds
    /// that, but nothing relies on it).
    ///
    /// # Errors
    /// When the lock file cannot be opened or locked.
    pub fn try_acquire(data_dir: &Path) -> std::io::Result<Option<ServeLock>> {
        let (file, _) = open(data_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(lock_dir(data_dir)?.map(|dir| ServeLock {
                _file: file,
                _dir: dir,
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(err)) => Err(err),
        }
    }
}

fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOCK_FILE)
}

fn open(data_dir: &Path) -> std::io::Result<(File, PathBuf)> {
    let path = lock_path(data_dir);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let _ = crate::private::tighten(&path);
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_held_lock_is_not_taken_again_even_by_its_own_process() {
        let dir = tempfile::tempdir().unwrap();
        let held = ServeLock::try_acquire(dir.path()).unwrap();
        assert!(held.is_some());
        assert!(ServeLock::try_acquire(dir.path()).unwrap().is_none());
        assert!(ServeLock::acquire(dir.path()).is_err());
        drop(held);
        assert!(ServeLock::try_acquire(dir.path()).unwrap().is_some());
    }

    /// A lock file deleted under a running server (a clean-up script) let
    /// a second one take a new file and open the same stores (found by
    /// review): the directory itself is locked too.
    #[test]
    fn test_a_deleted_lock_file_does_not_free_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let held = ServeLock::acquire(dir.path()).unwrap();
        std::fs::remove_file(lock_path(dir.path())).unwrap();
        let err = ServeLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another dialgate process"), "{err}");
        assert!(ServeLock::try_acquire(dir.path()).unwrap().is_none());
        drop(held);
        assert!(ServeLock::acquire(dir.path()).is_ok());
    }
}
