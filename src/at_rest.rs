//! Files at rest (GDPR art. 32): at start, whether `data_dir` and its files
//! are private, and whether the filesystem they are on is encrypted. Best
//! effort on Linux: the mount is found in `/proc/self/mountinfo`; dm-crypt
//! (LUKS) is recognised by a `CRYPT-` device-mapper uuid anywhere under the
//! block device (LVM on LUKS included), fscrypt by the directory's
//! encrypted attribute, eCryptfs by the filesystem type. Where none of
//! these can be read the answer is "could not tell", never a guess.
//! Self-encrypting and cloud-encrypted disks look like plain disks: the
//! warning says so.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What was found about `data_dir`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AtRest {
    pub data_dir: String,
    pub filesystem: Option<String>,
    pub device: Option<String>,
    /// `dm-crypt`, `fscrypt`, `ecryptfs`, `memory` (tmpfs: never on disk),
    /// `none found`, or `could not tell: ...`.
    pub encryption: String,
    pub warnings: Vec<String>,
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    device: String,
    mount_point: PathBuf,
    fstype: String,
    source: String,
}

/// Un-escapes mountinfo's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = field.get(i + 1..i + 4)
            && let Ok(value) = u8::from_str_radix(octal, 8)
        {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut rest = after.split(' ');
            Some(Mount {
                device: fields.get(2)?.to_string(),
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                fstype: rest.next()?.to_string(),
                source: unescape(rest.next().unwrap_or("")),
            })
        })
        .collect()
}

/// The mount `path` is on: the last-mounted of the longest matching mount points.
fn mount_of<'m>(mounts: &'m [Mount], path: &Path) -> Option<&'m Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

/// Whether a block device (`/sys/dev/block/MAJ:MIN` under `sys`) is
/// dm-crypt or sits on one: `Some(true)` yes, `Some(false)` no, `None`
/// could not tell.
fn dm_crypt(sys: &Path, device: &str) -> Option<bool> {
    let node = std::fs::canonicalize(sys.join("dev/block").join(device)).ok()?;
    Some(crypt_below(&node, 0))
}

fn crypt_below(node: &Path, depth: u32) -> bool {
    if depth > 8 {
        return false;
    }
    if std::fs::read_to_string(node.join("dm/uuid")).is_ok_and(|uuid| uuid.starts_with("CRYPT-")) {
        return true;
    }
    let below = std::fs::read_dir(node.join("slaves"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::canonicalize(e.path()).ok());
    // A partition's disk is its parent directory (not below it).
    below.into_iter().any(|n| crypt_below(&n, depth + 1))
}

/// fscrypt: the directory's encrypted attribute, when the kernel reports it.
#[cfg(target_os = "linux")]
fn fscrypt(path: &Path) -> Option<bool> {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
    let stat =
        rustix::fs::statx(rustix::fs::CWD, path, AtFlags::empty(), StatxFlags::empty()).ok()?;
    stat.stx_attributes_mask
        .contains(StatxAttributes::ENCRYPTED)
        .then(|| stat.stx_attributes.contains(StatxAttributes::ENCRYPTED))
}

#[cfg(not(target_os = "linux"))]
fn fscrypt(_: &Path) -> Option<bool> {
    None
}

/// Filesystems whose permissions or location dialgate cannot vouch for.
const NETWORK_OR_FUSE: [&str; 7] = ["nfs", "nfs4", "cifs", "smb3", "9p", "sshfs", "fuse"];
/// Filesystems that do not keep Unix permissions.
const NO_PERMISSIONS: [&str; 5] = ["vfat", "exfat", "msdos", "ntfs", "ntfs3"];

/// Checks `data_dir` (after it was tightened at start).
pub fn check(data_dir: &Path) -> AtRest {
    check_with(
        data_dir,
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        Path::new("/sys"),
    )
}

fn check_with(data_dir: &Path, mountinfo: &str, sys: &Path) -> AtRest {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mut report = AtRest {
        data_dir: dir.display().to_string(),
        ..AtRest::default()
    };
    // Readable by others after tightening: the filesystem ignores modes.
    let mut exposed = Vec::new();
    let mut paths = vec![dir.clone()];
    let mut pending = vec![(dir.clone(), 0)];
    while let Some((parent, depth)) = pending.pop() {
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let path = entry.path();
            if depth < 2 && entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push((path.clone(), depth + 1));
            }
            paths.push(path);
        }
    }
    for path in &paths {
        if let Ok(meta) = std::fs::symlink_metadata(path)
            && !meta.file_type().is_symlink()
            // Empty files (locks) hold nothing to read.
            && !(meta.is_file() && meta.len() == 0)
            && meta.permissions().mode() & 0o077 != 0
        {
            exposed.push(format!(
                "{} ({:o})",
                path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
    }
    if !exposed.is_empty() {
        report.warnings.push(format!(
            "readable by group or others: {} (the filesystem did not keep owner-only permissions)",
            exposed.join(", ")
        ));
    }
    let mounts = parse_mountinfo(mountinfo);
    let Some(mount) = mount_of(&mounts, &dir) else {
        report.encryption = "could not tell: the mount of data_dir was not found".into();
        report.warnings.push(format!(
            "could not tell whether data_dir {} is on an encrypted volume",
            dir.display()
        ));
        return report;
    };
    report.filesystem = Some(mount.fstype.clone());
    report.device = Some(mount.source.clone());
    let fstype = mount.fstype.as_str();
    if NO_PERMISSIONS.contains(&fstype) {
        report.warnings.push(format!(
            "data_dir is on {fstype}, which does not keep Unix permissions: other users may read the stores"
        ));
    }
    report.encryption = if fstype == "ecryptfs" {
        "ecryptfs".into()
    } else if fscrypt(&dir) == Some(true) {
        "fscrypt".into()
    } else if matches!(fstype, "tmpfs" | "ramfs") {
        "memory".into()
    } else if NETWORK_OR_FUSE
        .iter()
        .any(|n| fstype == *n || fstype.starts_with("fuse."))
    {
        format!("could not tell: {fstype} (a network or FUSE filesystem)")
    } else {
        match dm_crypt(sys, &mount.device) {
            Some(true) => "dm-crypt".into(),
            Some(false) => "none found".into(),
            None => format!(
                "could not tell: {fstype} on {} is not a block device dialgate can inspect",
                mount.source
            ),
        }
    };
    match report.encryption.as_str() {
        "dm-crypt" | "fscrypt" | "ecryptfs" => {}
        "memory" => report.warnings.push(format!(
            "data_dir {} is in memory ({fstype}): nothing survives a restart",
            dir.display()
        )),
        "none found" => report.warnings.push(format!(
            "data_dir {} is on {} ({fstype}) without dm-crypt/LUKS, fscrypt or eCryptfs: the stores are unencrypted at rest unless the disk encrypts itself (cloud or self-encrypting disk); see README, Files at rest",
            dir.display(),
            mount.source
        )),
        other => report.warnings.push(format!(
            "{other}: whether data_dir {} is on an encrypted volume is unknown; see README, Files at rest",
            dir.display()
        )),
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 253:1 / / rw,relatime - ext4 /dev/mapper/vg-root rw
30 27 253:2 / /var/lib rw,relatime - ext4 /dev/mapper/luks-data rw
31 30 0:40 / /var/lib/my\\040data rw - tmpfs tmpfs rw
32 27 0:50 / /mnt/nfs rw - nfs4 server:/export rw
";

    #[test]
    fn test_the_longest_mount_point_holds_the_path() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        let of = |p: &str| mount_of(&mounts, Path::new(p)).unwrap().device.clone();
        assert_eq!(of("/var/lib/dialgate"), "253:2");
        assert_eq!(of("/var/lib/my data/x"), "0:40");
        assert_eq!(
            of("/var/library"),
            "253:1",
            "a prefix of a name is not a parent"
        );
        assert_eq!(of("/home"), "253:1");
    }

    /// dm-crypt directly, LVM on LUKS, and a plain disk.
    #[test]
    fn test_dm_crypt_is_found_below_the_device() {
        let sys = tempfile::tempdir().unwrap();
        let block = sys.path().join("devices/virtual/block");
        let dev = |name: &str, uuid: Option<&str>| {
            let node = block.join(name);
            std::fs::create_dir_all(node.join("slaves")).unwrap();
            if let Some(uuid) = uuid {
                std::fs::create_dir_all(node.join("dm")).unwrap();
                std::fs::write(node.join("dm/uuid"), uuid).unwrap();
            }
            node
        };
        let crypt = dev("dm-0", Some("CRYPT-LUKS2-abc-luks"));
        let lvm = dev("dm-1", Some("LVM-xyz"));
        std::os::unix::fs::symlink(&crypt, lvm.join("slaves/dm-0")).unwrap();
        let plain = dev("sda1", None);
        std::fs::create_dir_all(sys.path().join("dev/block")).unwrap();
        for (id, node) in [("253:0", &crypt), ("253:1", &lvm), ("8:1", &plain)] {
            std::os::unix::fs::symlink(node, sys.path().join("dev/block").join(id)).unwrap();
        }
        assert_eq!(dm_crypt(sys.path(), "253:0"), Some(true));
        assert_eq!(dm_crypt(sys.path(), "253:1"), Some(true));
        assert_eq!(dm_crypt(sys.path(), "8:1"), Some(false));
        assert_eq!(dm_crypt(sys.path(), "0:40"), None);
    }

    #[test]
    fn test_unknown_and_unencrypted_volumes_are_warned_about() {
        let sys = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap();
        let mountinfo = "27 1 0:99 / / rw - overlay overlay rw\n";
        let report = check_with(&path, mountinfo, sys.path());
        assert!(
            report.encryption.starts_with("could not tell"),
            "{report:?}"
        );
        assert!(
            report.warnings.iter().any(|w| w.contains("unknown")),
            "{report:?}"
        );
        let nested = path.join("registries");
        std::fs::create_dir(&nested).unwrap();
        std::fs::write(nested.join("x.snap"), b"x").unwrap();
        std::fs::set_permissions(
            nested.join("x.snap"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let report = check_with(&path, mountinfo, sys.path());
        assert!(
            report.warnings.iter().any(|w| w.contains("x.snap (644)")),
            "{report:?}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let report = check_with(&path, mountinfo, sys.path());
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("readable by group or others")),
            "{report:?}"
        );
    }
}
