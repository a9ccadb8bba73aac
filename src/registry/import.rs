//! `dialgate registry import`: parses a registry file, applies it to the
//! registry's current snapshot and writes the next snapshot atomically.
//!
//! A file with a bad line changes nothing: the import fails naming each bad
//! line (the first 20) and how many there were.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::civil::Date;
use roaring::RoaringTreemap;

use super::file::{self, SnapshotFileError};
use super::snapshot::{ApplyError, ImportMode, ImportSet, Snapshot, SnapshotSource};
use crate::config::RegistryConfig;
use crate::number::{self, Region};

/// How many bad lines an error message lists.
const LISTED_REJECTS: usize = 20;

/// File formats understood by the importer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One number per line, any common notation; `#` starts a comment line.
    Lines,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "lines" => Some(Format::Lines),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Lines => "lines",
        }
    }
}

/// One import, as asked for on the command line.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub file: PathBuf,
    pub format: Format,
    pub mode: ImportMode,
    pub checked_at: Date,
    pub controller: Option<String>,
    /// Coverage prefixes in E.164 (`+1212`).
    pub covers: Option<Vec<String>>,
    pub dry_run: bool,
}

/// A rejected input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub line: u64,
    pub problem: String,
}

/// Why an import failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}", RejectList(.0, *.1))]
    BadLines(Vec<Reject>, u64),
    #[error("--checked-at {0} is in the future")]
    CheckedAtInFuture(Date),
    #[error("--covers {0:?}: {1}")]
    BadCoverage(String, String),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("current snapshot unusable, refusing to build on it: {0}")]
    Snapshot(#[from] SnapshotFileError),
    #[error("cannot write snapshot: {0}")]
    Write(std::io::Error),
}

struct RejectList<'a>(&'a [Reject], u64);

impl fmt::Display for RejectList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bad line(s), nothing imported:", self.1)?;
        for reject in self.0 {
            write!(f, " line {}: {};", reject.line, reject.problem)?;
        }
        if self.1 > self.0.len() as u64 {
            write!(f, " and {} more", self.1 - self.0.len() as u64)?;
        }
        Ok(())
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub registry_id: String,
    pub lines: u64,
    pub numbers: u64,
    pub duplicates: u64,
    pub numbers_before: u64,
    pub numbers_after: u64,
    pub version: u64,
    pub dry_run: bool,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}registry {}: {} lines, {} distinct numbers, {} duplicates; {} -> {} numbers, version {}",
            if self.dry_run {
                "dry run, nothing written: "
            } else {
                ""
            },
            self.registry_id,
            self.lines,
            self.numbers,
            self.duplicates,
            self.numbers_before,
            self.numbers_after,
            self.version
        )
    }
}

/// Numbers parsed from a file.
#[derive(Debug, Default)]
pub struct ParsedNumbers {
    pub lines: u64,
    pub numbers: RoaringTreemap,
    pub duplicates: u64,
}

/// Parses a `lines` file: one number per line in any common notation, with
/// `region` as the default; every number must belong to `region`.
///
/// # Errors
/// The bad lines (the first 20) and their count.
pub fn parse_lines(reader: impl Read, region: Region) -> Result<ParsedNumbers, (Vec<Reject>, u64)> {
    let mut parsed = ParsedNumbers::default();
    let mut keys = Vec::new();
    let mut rejects = Vec::new();
    let mut reject_count = 0u64;
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut buf = Vec::with_capacity(64);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => {
                reject_count += 1;
                rejects.push(Reject {
                    line: parsed.lines + 1,
                    problem: format!("read error: {err}"),
                });
                break;
            }
        }
        parsed.lines += 1;
        let problem = match std::str::from_utf8(&buf) {
            Err(_) => Some("not valid UTF-8".to_string()),
            Ok(text) => {
                let text = text.trim();
                if text.is_empty() || text.starts_with('#') {
                    None
                } else {
                    match number::normalize_any(text, region) {
                        Ok(n) if n.region != region => Some(format!(
                            "{text:?} is a number of {}, not {region}",
                            n.region
                        )),
                        Ok(n) => {
                            keys.push(n.key.0);
                            None
                        }
                        Err(err) => Some(format!("{text:?}: {err}")),
                    }
                }
            }
        };
        if let Some(problem) = problem {
            reject_count += 1;
            if rejects.len() < LISTED_REJECTS {
                rejects.push(Reject {
                    line: parsed.lines,
                    problem,
                });
            }
        }
    }
    if reject_count > 0 {
        return Err((rejects, reject_count));
    }
    keys.sort_unstable();
    let before = keys.len() as u64;
    keys.dedup();
    parsed.duplicates = before - keys.len() as u64;
    parsed.numbers = RoaringTreemap::from_sorted_iter(keys).expect("keys are sorted");
    Ok(parsed)
}

/// Parses `--covers` prefixes (`+1212,+1646`) into E.164 digit prefixes.
///
/// # Errors
/// [`ImportError::BadCoverage`] naming the bad prefix.
pub fn parse_coverage(
    prefixes: &[String],
    registry: &RegistryConfig,
) -> Result<Vec<String>, ImportError> {
    let calling_code = registry.country.calling_code().to_string();
    prefixes
        .iter()
        .map(|p| {
            let digits = p.trim().strip_prefix('+').ok_or_else(|| {
                ImportError::BadCoverage(
                    p.clone(),
                    "write prefixes in E.164 form, e.g. +1212".into(),
                )
            })?;
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(ImportError::BadCoverage(
                    p.clone(),
                    "not a digit prefix".into(),
                ));
            }
            if !digits.starts_with(&calling_code) {
                return Err(ImportError::BadCoverage(
                    p.clone(),
                    format!(
                        "not a prefix of {} numbers (+{calling_code})",
                        registry.country
                    ),
                ));
            }
            Ok(digits.to_string())
        })
        .collect()
}

/// Runs an import against the snapshots in `dir`.
///
/// # Errors
/// [`ImportError`]; on any error nothing is written.
pub fn run(
    registry: &RegistryConfig,
    dir: &Path,
    request: &ImportRequest,
    now: Timestamp,
) -> Result<ImportSummary, ImportError> {
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    if request.checked_at > today {
        return Err(ImportError::CheckedAtInFuture(request.checked_at));
    }
    let coverage = request
        .covers
        .as_ref()
        .map(|c| parse_coverage(c, registry))
        .transpose()?;
    let input = File::open(&request.file).map_err(|cause| ImportError::Read {
        path: request.file.clone(),
        cause,
    })?;
    let parsed = match request.format {
        Format::Lines => parse_lines(input, registry.country),
    }
    .map_err(|(rejects, count)| ImportError::BadLines(rejects, count))?;

    let _lock = file::lock(dir, &registry.id).map_err(ImportError::Write)?;
    let previous = file::read(dir, &registry.id)?;
    let numbers = parsed.numbers.len();
    let next = Snapshot::apply(
        previous.as_ref(),
        &registry.id,
        registry.kind,
        registry.country.as_str(),
        ImportSet {
            mode: request.mode,
            controller: request.controller.clone().unwrap_or_default(),
            checked_at: request.checked_at,
            numbers: parsed.numbers,
            coverage,
            source: SnapshotSource {
                file: request.file.display().to_string(),
                format: request.format.as_str().to_string(),
                mode: request.mode.as_str().to_string(),
            },
        },
        now,
    )?;
    if !request.dry_run {
        file::write(dir, &next).map_err(ImportError::Write)?;
    }
    Ok(ImportSummary {
        registry_id: registry.id.clone(),
        lines: parsed.lines,
        numbers,
        duplicates: parsed.duplicates,
        numbers_before: previous.as_ref().map_or(0, Snapshot::len),
        numbers_after: next.len(),
        version: next.version,
        dry_run: request.dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::NumberKey;

    fn it() -> Region {
        Region::parse("IT").unwrap()
    }

    #[test]
    fn test_lines_accepts_common_notations_and_comments() {
        let text =
            "# RPO result\n+39 333 123 4567\n0039 333 1234567\n\n02 8765 4321\r\n333-1234568\n";
        let parsed = parse_lines(text.as_bytes(), it()).unwrap();
        assert_eq!(parsed.lines, 6);
        assert_eq!(parsed.numbers.len(), 3);
        assert_eq!(parsed.duplicates, 1);
        assert!(
            parsed
                .numbers
                .contains(NumberKey::from_e164("+390287654321").unwrap().0)
        );
    }

    #[test]
    fn test_lines_names_every_bad_line() {
        let text = "+39 333 123 4567\nhello\n+1 212 555 0123\n12\n";
        let (rejects, count) = parse_lines(text.as_bytes(), it()).unwrap_err();
        assert_eq!(count, 3);
        assert_eq!(
            rejects.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert!(rejects[0].problem.contains("hello"), "{:?}", rejects[0]);
        assert!(rejects[1].problem.contains("not IT"), "{:?}", rejects[1]);
    }

    #[test]
    fn test_reject_list_is_capped() {
        let text = "x\n".repeat(25);
        let err = ImportError::BadLines(parse_lines(text.as_bytes(), it()).unwrap_err().0, 25);
        let message = err.to_string();
        assert!(message.starts_with("25 bad line(s)"), "{message}");
        assert!(
            message.contains("line 20:") && !message.contains("line 21:"),
            "{message}"
        );
        assert!(message.ends_with("and 5 more"), "{message}");
    }
}
