//! Files at rest hold every number and consent: created owner-only (files
//! 0600, directories 0700; a stricter umask still applies), and existing
//! ones tightened at start.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of files dialgate creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of directories dialgate creates.
pub const DIR_MODE: u32 = 0o700;

/// Creates (or truncates) a file, owner-only: an existing file keeps no
/// wider mode (the mode given at open applies only to a new file, and a
/// rejects file left world-readable got the rejected numbers; found by
/// review).
pub fn create_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    narrowed(file)
}

/// `file`, made owner-only if it was wider (the mode given at open applies
/// only to a file it creates).
fn narrowed(file: File) -> io::Result<File> {
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & !FILE_MODE != 0 {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
}

/// [`narrowed`], but a file this process may open and not re-mode (owned
/// by another user, group-writable) is kept as it is, with a warning: the
/// append or open it serves (a checkpoint, an erasure's ledger line)
/// matters more than its mode.
fn narrowed_if_possible(file: File, path: &Path) -> io::Result<File> {
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & !FILE_MODE != 0
        && let Err(err) = file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
    {
        tracing::warn!(path = %path.display(), error = %err, mode = format!("{mode:o}"), "cannot make owner-only");
    }
    Ok(file)
}

/// Opens a file for appending, creating it owner-only (an existing one is
/// made owner-only too, where this process may).
pub fn append_file(path: &Path) -> io::Result<File> {
    narrowed_if_possible(
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(path)?,
        path,
    )
}

/// Creates a file owner-only if it does not exist yet (leaving its
/// content; an existing one is made owner-only), so that SQLite, which
/// gives its `-wal`, `-shm` and `-journal` files the database file's mode,
/// creates them owner-only too (found by review: a command run on a
/// database left 0644 before the server's start tightened it made a 0644
/// write-ahead log).
pub fn touch(path: &Path) -> io::Result<()> {
    narrowed_if_possible(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(path)?,
        path,
    )
    .map(drop)
}

/// Creates a directory and its missing parents, owner-only.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Removes group and other permissions from `path` if it exists; returns
/// whether it changed anything.
pub fn tighten(path: &Path) -> io::Result<bool> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    if metadata.file_type().is_symlink() {
        return Ok(false);
    }
    let mode = metadata.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o077))?;
    Ok(true)
}

/// Tightens the data directory and the stores in it (see [`tighten`]),
/// logging a warning per path it changed.
pub fn tighten_data_dir(data_dir: &Path) {
    let mut paths = vec![data_dir.to_path_buf()];
    for name in [
        "decisions.db",
        "decisions.db-wal",
        "decisions.db-shm",
        "decisions.db-journal",
        "contacts.db",
        "contacts.db-wal",
        "contacts.db-shm",
        "contacts.db-journal",
        "checkpoints.jsonl",
        "head.json",
        "registries",
    ] {
        paths.push(data_dir.join(name));
    }
    if let Ok(entries) = fs::read_dir(data_dir.join("registries")) {
        paths.extend(entries.flatten().map(|e| e.path()));
    }
    for path in paths {
        match tighten(&path) {
            Ok(true) => tracing::warn!(
                path = %path.display(),
                "was readable by group or others: made owner-only"
            ),
            Ok(false) => {}
            Err(err) => tracing::warn!(
                path = %path.display(),
                error = %err,
                "cannot make owner-only"
            ),
        }
    }
}

/// A warning if a secret (key) file can be read by group or others.
pub fn exposed_secret(path: &Path) -> Option<String> {
    let mode = fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} is readable by group or others (mode {:o}): make it owner-only (chmod 600)",
            path.display(),
            mode & 0o777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_created_owner_only_and_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_dir_all(&sub).unwrap();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700 & fs::metadata(&sub).unwrap().permissions().mode()
        );
        assert_eq!(fs::metadata(&sub).unwrap().permissions().mode() & 0o077, 0);
        let file = sub.join("f");
        create_file(&file).unwrap();
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o077, 0);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(exposed_secret(&file).is_some());
        assert!(tighten(&file).unwrap());
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!tighten(&file).unwrap());
        assert!(exposed_secret(&file).is_none());
        // An existing world-readable file written again (a rejects file).
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        create_file(&file).unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    /// A file appended to or touched (a database SQLite then opens, whose
    /// write-ahead log takes its mode) is made owner-only when it exists
    /// wider (found by review: only a file they created was).
    #[test]
    fn test_existing_files_opened_again_are_made_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        for (name, open) in [
            (
                "appended",
                (|p: &Path| append_file(p).map(drop)) as fn(&Path) -> io::Result<()>,
            ),
            ("touched", touch),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, b"kept").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            open(&path).unwrap();
            assert_eq!(mode(&path), 0o600, "{name}");
            assert_eq!(fs::read(&path).unwrap(), b"kept", "{name}");
        }
    }
}
