//! The lock every bulk contact import holds on its store for its whole
//! run (`contacts-import.lock` beside `contacts.db`): imports from several
//! processes (two scheduled CLI imports, say) run one after the other.
//!
//! An import checks the ids it brings against the store, then moves its
//! records in (`INSERT OR IGNORE`). Two imports checked side by side could
//! each pass with one id for two different opt-outs, or consents; the
//! first to move in would keep its record and the other's would be left
//! out without a word: a number called although a file said not to.

use std::fs::File;
use std::path::Path;

/// Held while an import runs (released when dropped, or when its process
/// dies: an advisory `flock`).
#[derive(Debug)]
pub(crate) struct ImportLock {
    _file: File,
}

/// The lock file's name, beside the store.
pub(crate) const IMPORT_LOCK_FILE: &str = "contacts-import.lock";

impl ImportLock {
    /// Takes the lock of the store at `store_path`, waiting for an import
    /// that holds it to end.
    pub(crate) fn acquire(store_path: &Path) -> std::io::Result<ImportLock> {
        let path = store_path.with_file_name(IMPORT_LOCK_FILE);
        crate::private::touch(&path)?;
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::info!(
                    lock = %path.display(),
                    "another import is running on this store: waiting for it to end"
                );
                file.lock()?;
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(err),
        }
        Ok(ImportLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_second_import_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("contacts.db");
        let held = ImportLock::acquire(&store).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiting = {
            let store = store.clone();
            std::thread::spawn(move || {
                let lock = ImportLock::acquire(&store).unwrap();
                sender.send(()).unwrap();
                lock
            })
        };
        assert!(
            receiver
                .recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "taken while held"
        );
        drop(held);
        receiver
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap();
        drop(waiting.join().unwrap());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(IMPORT_LOCK_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o077, 0, "private");
    }
}
