//! `dialgate registry import`: streams a registry file (plain, gzip or zip),
//! parses it in the chosen format, sorts the keys on every core, applies them
//! to the registry's current snapshot and writes the next snapshot
//! atomically. Bad lines fail the import and change nothing, naming the
//! first 20 and how many there were, unless `--max-rejects` tolerates them
//! (they are then written to a rejects file).

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::civil::Date;
use rayon::slice::ParallelSliceMut;
use roaring::RoaringTreemap;

use super::file::{self, SnapshotFileError};
pub use super::formats::{DelimitedTemplate, FixedTemplate, Format};
use super::formats::{LineItem, LineParser};
use super::snapshot::{ApplyError, ImportMode, ImportSet, Snapshot, SnapshotSource};
use crate::config::RegistryConfig;
use crate::model::RegistryKind;
use crate::number::Region;

/// How many bad lines an error message lists.
const LISTED_REJECTS: usize = 20;

/// The longest line an import accepts, in bytes (without the line break).
/// A longer line fails the import at once: it is never held whole in memory.
pub const MAX_LINE_BYTES: usize = 4096;

/// The longest problem text kept for one rejected line.
const MAX_PROBLEM_CHARS: usize = 200;

/// An import, in any mode, may shrink a registry (an allow-list: one
/// controller's list) by at most this share unless the operator allows it
/// (`--allow-shrink`).
pub const DEFAULT_MAX_SHRINK_PERCENT: u8 = 10;

/// One import, as asked for on the command line.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub file: PathBuf,
    /// `None` = detect from the first line.
    pub format: Option<Format>,
    pub mode: ImportMode,
    pub checked_at: Date,
    pub controller: Option<String>,
    /// Coverage prefixes in E.164 (`+1212`).
    pub covers: Option<Vec<String>>,
    pub dry_run: bool,
    /// Bad lines tolerated (written to `rejects_file`).
    pub max_rejects: u64,
    pub rejects_file: Option<PathBuf>,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Accept a result that is empty or shrinks the list by more than
    /// `max_shrink_percent`.
    pub allow_shrink: bool,
    /// The largest shrink accepted without `allow_shrink`, in percent (0..=100).
    pub max_shrink_percent: u8,
    /// Block-list change lists: the check date of the list they continue.
    pub changes_since: Option<Date>,
    /// Accept a block-list whose numbers do not span what `covers` states
    /// (see [`super::coverage_check`]).
    pub allow_narrow_file: bool,
    /// Accept an import dated before newer data already held (see
    /// [`super::snapshot::ApplyError::OlderThanReplace`] and
    /// [`super::snapshot::ApplyError::OlderThanNewestData`]).
    pub older_than_replace: bool,
    /// Accept a plain file whose last line has no line end (see
    /// [`crate::line_file::ends_mid_line`]).
    pub accept_unterminated_last_line: bool,
    /// Allow-lists: numbers the answer withholds (opposed: `--submitted`
    /// left out, `--opposed`), taken out of the controller's older
    /// clearances as of `checked_at`, as a change list's delete lines are.
    pub withheld: RoaringTreemap,
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
    Read { path: PathBuf, cause: String },
    #[error("{}", RejectList(.0, *.1))]
    BadLines(Vec<Reject>, u64),
    #[error(
        "{0} ends in the middle of a line (its last line has no line end): it may be cut short (an interrupted download or copy), and a number cut short may be another valid number. Nothing imported; if the file is whole, pass --accept-unterminated-last-line"
    )]
    EndsMidLine(String),
    #[error("--checked-at {0} is in the future")]
    CheckedAtInFuture(Date),
    #[error("--covers {0:?}: {1}")]
    BadCoverage(String, String),
    #[error(transparent)]
    NarrowFile(#[from] super::coverage_check::NarrowFile),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("current snapshot unusable, refusing to build on it: {0}")]
    Snapshot(#[from] SnapshotFileError),
    #[error("cannot write snapshot: {0}")]
    Write(std::io::Error),
    #[error(
        "{file} holds no numbers ({lines} lines): refusing an empty import of registry {registry}{}; pass --allow-shrink if this is intended",
        for_controller(.controller)
    )]
    Empty {
        registry: String,
        controller: String,
        file: String,
        lines: u64,
    },
    #[error(
        "refusing to shrink registry {registry}{} from {before} -> {after} numbers (more than {max_percent} %); pass --allow-shrink if this is intended, or raise --max-shrink-percent",
        for_controller(.controller)
    )]
    Shrink {
        registry: String,
        controller: String,
        before: u64,
        after: u64,
        max_percent: u8,
    },
    #[error(
        "{file} is a change list ({adds} numbers added, {removals} deleted): --mode remove would remove its added numbers too; import it with --mode add"
    )]
    ChangeListRemoved {
        file: String,
        adds: u64,
        removals: u64,
    },
    #[error(
        "{file} is read as a change list (the format has an action column): --mode {mode} would take its additions as {}; import a block-list's change list with --mode add",
        if *.mode == "replace" { "the whole list and drop its deletions" } else { "deletions" }
    )]
    ChangeListNotAdded { file: String, mode: &'static str },
}

fn for_controller(controller: &str) -> String {
    if controller.is_empty() {
        String::new()
    } else {
        format!(" for controller {controller:?}")
    }
}

/// Whether going from `before` to `after` numbers shrinks by more than
/// `max_percent` percent (exact integer arithmetic; an empty result always does
/// when there was anything before).
pub fn shrinks_too_much(before: u64, after: u64, max_percent: u8) -> bool {
    if after >= before {
        return false;
    }
    if after == 0 {
        return true;
    }
    let lost = u128::from(before - after) * 100;
    lost > u128::from(before) * u128::from(max_percent.min(100))
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
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    pub registry_id: String,
    pub format: &'static str,
    pub lines: u64,
    pub numbers: u64,
    pub removals: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub numbers_before: u64,
    pub numbers_after: u64,
    pub version: u64,
    pub dry_run: bool,
    pub seconds: f64,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}registry {} ({}): {} lines, {} distinct numbers, {} removals, {} duplicates, {} rejected; {} -> {} numbers, version {}, {:.2} s",
            if self.dry_run {
                "dry run, nothing written: "
            } else {
                ""
            },
            self.registry_id,
            self.format,
            self.lines,
            self.numbers,
            self.removals,
            self.duplicates,
            self.rejected,
            self.numbers_before,
            self.numbers_after,
            self.version,
            self.seconds
        )
    }
}

/// Numbers parsed from a file.
#[derive(Debug, Default)]
pub struct ParsedNumbers {
    pub lines: u64,
    /// The last line read had no line end (`\n`, or `\r` alone): the data
    /// may be cut short (see [`crate::line_file::ends_mid_line`]). Told in
    /// the reading pass, so a file still growing while it is read, or a
    /// gzip of several members cut between two, is told too.
    pub unterminated: bool,
    pub numbers: RoaringTreemap,
    pub removals: RoaringTreemap,
    pub duplicates: u64,
    pub rejects: Vec<Reject>,
    pub reject_count: u64,
}

/// Parses a registry file in `format` (or detected) for `region`.
///
/// Keeps every reject when `keep_all_rejects`, else the first 20.
///
/// # Errors
/// A read error.
pub fn parse(
    reader: impl Read,
    format: Option<Format>,
    region: Region,
    keep_all_rejects: bool,
) -> std::io::Result<(Format, ParsedNumbers)> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    // A UTF-8 byte-order mark (an export saved by a spreadsheet or an
    // editor) is no part of the first line: kept, it refused the first
    // number (with `--max-rejects`, imported the list without it) and hid
    // the file's format (found by review).
    if reader.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    let detected = format.is_none();
    let format = match format {
        Some(format) => format,
        None => {
            let head = reader.fill_buf()?;
            let text = String::from_utf8_lossy(&head[..head.len().min(4096)]).to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .unwrap_or("");
            Format::detect(first, region)
        }
    };
    let mut parser = LineParser::new(format.clone(), region);
    // Detected formats take their fast path only on lines of their own
    // shape; any other line goes to the general parser, so that detection
    // never refuses a file `lines` accepts.
    let mut general =
        (detected && format != Format::Lines).then(|| LineParser::new(Format::Lines, region));
    // A GB file read without a stated format may be a TPS file whatever its
    // first line looks like (a header, a flag after the number field): its
    // lines with more after a number field are read as TPS would read them
    // too, and refused where the two readings differ.
    let mut tps_reading =
        (detected && region.as_str() == "GB").then(|| LineParser::new(Format::Tps, region));
    let mut parsed = ParsedNumbers::default();
    let mut adds: Vec<u64> = Vec::new();
    let mut removes: Vec<u64> = Vec::new();
    let mut buf = Vec::with_capacity(128);
    loop {
        buf.clear();
        // At most one byte more than the limit is ever read into `buf`.
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        parsed.lines += 1;
        parsed.unterminated = !matches!(buf.last(), Some(b'\n' | b'\r'));
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > MAX_LINE_BYTES {
            return Err(line_too_long(parsed.lines, &buf));
        }
        let result = match std::str::from_utf8(&buf) {
            Err(_) => Err(format!(
                "not valid UTF-8: {}",
                super::formats::quoted(&String::from_utf8_lossy(&buf))
            )),
            Ok(text) => {
                let result = match general.as_mut() {
                    Some(general) if Format::detect(text, region) != format => {
                        general.parse(text, parsed.lines)
                    }
                    // A line of the fast format's shape that it refuses still
                    // gets the general parser's word.
                    Some(general) => parser
                        .parse(text, parsed.lines)
                        .or_else(|problem| general.parse(text, parsed.lines).map_err(|_| problem)),
                    None => parser.parse(text, parsed.lines),
                };
                match tps_reading.as_mut() {
                    Some(tps) if Format::tps_field_with_more(text) => {
                        match (&result, tps.parse(text, parsed.lines)) {
                            (Ok(a), Ok(b)) if *a != b => Err(format!(
                                "{}: reads as two numbers, the 12-character number field or the whole line; pass --format tps to read the field alone, or --format lines to read the whole line",
                                super::formats::quoted(text)
                            )),
                            (Err(problem), Ok(_)) => Err(format!(
                                "{problem} (a TPS number field with more after it: pass --format tps to read the field alone)"
                            )),
                            _ => result,
                        }
                    }
                    _ => result,
                }
            }
        };
        match result {
            Ok(LineItem::Skip) => {}
            Ok(LineItem::Add(key)) => adds.push(key.0),
            Ok(LineItem::Remove(key)) => removes.push(key.0),
            Err(problem) => {
                parsed.reject_count += 1;
                if keep_all_rejects || parsed.rejects.len() < LISTED_REJECTS {
                    parsed.rejects.push(Reject {
                        line: parsed.lines,
                        problem: shorten(problem),
                    });
                }
            }
        }
    }
    let (numbers, duplicates) = sorted_set(adds);
    let (removals, removal_duplicates) = sorted_set(removes);
    parsed.numbers = numbers;
    parsed.removals = removals;
    parsed.duplicates = duplicates + removal_duplicates;
    Ok((format, parsed))
}

/// The error for a line longer than [`MAX_LINE_BYTES`]: names the line and
/// quotes its first characters only.
fn line_too_long(line: u64, head: &[u8]) -> std::io::Error {
    let head = String::from_utf8_lossy(&head[..head.len().min(64)]);
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "line {line}: longer than {MAX_LINE_BYTES} bytes (starts {})",
            super::formats::quoted(&head)
        ),
    )
}

/// Caps a problem text at [`MAX_PROBLEM_CHARS`] characters.
fn shorten(problem: String) -> String {
    match problem.char_indices().nth(MAX_PROBLEM_CHARS) {
        None => problem,
        Some((cut, _)) => format!("{}...", &problem[..cut]),
    }
}

/// Sorts on every core, deduplicates, and builds the compact set.
fn sorted_set(mut keys: Vec<u64>) -> (RoaringTreemap, u64) {
    keys.par_sort_unstable();
    let before = keys.len() as u64;
    keys.dedup();
    let duplicates = before - keys.len() as u64;
    (
        RoaringTreemap::from_sorted_iter(keys).expect("keys are sorted"),
        duplicates,
    )
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

/// The numbers an import file lists (as `run` reads them: plain, gzip or
/// zip, in `format` or detected), without importing them.
///
/// # Errors
/// [`ImportError`] when the file cannot be read.
pub fn listed_numbers(
    path: &Path,
    format: Option<Format>,
    region: Region,
) -> Result<RoaringTreemap, ImportError> {
    with_input(path, None, |reader| parse(reader, format, region, false)).map(|(_, p)| p.numbers)
}

/// Opens the input, decompressing gzip or the one file of a zip, and hands
/// a reader to `consume`.
fn with_input<T>(
    path: &Path,
    progress: Option<&indicatif::ProgressBar>,
    consume: impl FnOnce(&mut dyn Read) -> std::io::Result<T>,
) -> Result<T, ImportError> {
    let read_error = |cause: String| ImportError::Read {
        path: path.to_path_buf(),
        cause,
    };
    let mut file = File::open(path).map_err(|e| read_error(e.to_string()))?;
    let mut magic = [0u8; 4];
    let n = file
        .read(&mut magic)
        .map_err(|e| read_error(e.to_string()))?;
    file.rewind().map_err(|e| read_error(e.to_string()))?;
    let result = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        let raw: Box<dyn Read> = match progress {
            Some(pb) => Box::new(pb.wrap_read(file)),
            None => Box::new(file),
        };
        consume(&mut flate2::read::MultiGzDecoder::new(raw))
    } else if n == 4 && magic == *b"PK\x03\x04" {
        let mut archive =
            zip::ZipArchive::new(file).map_err(|e| read_error(format!("zip: {e}")))?;
        let index = single_file_entry(&archive).map_err(read_error)?;
        let mut entry = archive
            .by_index(index)
            .map_err(|e| read_error(format!("zip: {e}")))?;
        consume(&mut entry)
    } else {
        match progress {
            Some(pb) => consume(&mut pb.wrap_read(file)),
            None => consume(&mut file),
        }
    };
    result.map_err(|e| read_error(e.to_string()))
}

/// The index of the one file entry of a zip (directory entries hold no
/// data and are skipped). A zip of several files is refused rather than
/// read in part: the files left out would be missing from the list
/// without a word, and a missing block-list number reads as clear.
fn single_file_entry<R: Read + Seek>(archive: &zip::ZipArchive<R>) -> Result<usize, String> {
    let files: Vec<(usize, String)> = archive
        .file_names_raw()
        .enumerate()
        // Directory names end with a slash (a backslash from some Windows
        // tools); macOS adds its files' metadata under `__MACOSX/`.
        .filter(|(_, name)| {
            !matches!(name.last(), Some(b'/' | b'\\')) && !name.starts_with(b"__MACOSX/")
        })
        .map(|(index, name)| (index, String::from_utf8_lossy(name).into_owned()))
        .collect();
    match files.as_slice() {
        [(index, _)] => Ok(*index),
        [] => Err("zip: holds no file entry; a registry zip must hold exactly one file".into()),
        [first, second, ..] => Err(format!(
            "zip: holds {} file entries ({}, {}{}); a registry zip must hold exactly one file: unzip it and import the list as one file",
            files.len(),
            super::formats::quoted(&first.1),
            super::formats::quoted(&second.1),
            if files.len() > 2 { ", ..." } else { "" }
        )),
    }
}

/// Refuses, unless `allow_shrink`, a file without any numbers and an import
/// that shrinks the list (an allow-list: the controller's list) by more than
/// the threshold or empties it: in any mode for a block-list, in a
/// `replace` for an allow-list.
fn check_shrink(
    registry: &RegistryConfig,
    request: &ImportRequest,
    previous: Option<&Snapshot>,
    next: &Snapshot,
    file_numbers: u64,
    lines: u64,
) -> Result<(), ImportError> {
    if request.allow_shrink {
        return Ok(());
    }
    let controller = request.controller.clone().unwrap_or_default();
    let count = |s: &Snapshot| -> u64 {
        s.batches
            .get(&controller)
            .map_or(0, |b| b.iter().map(|b| b.numbers.len()).sum())
    };
    let before = previous.map_or(0, count);
    let after = count(next);
    // A block-list is guarded in every mode: a `replace` drops every number
    // a short or wrong file lacks, a `remove` given the full list instead
    // of the deletions removes all of it, and an `add` removes its change
    // list's delete lines; an emptied block-list would read every number as
    // clear. An allow-list only in a `replace` (a wrong file): removing
    // clearances is the safe direction, and a withdrawal of clearance must
    // never wait for `--allow-shrink`.
    let guarded = registry.kind == RegistryKind::Blocklist || request.mode == ImportMode::Replace;
    if guarded && shrinks_too_much(before, after, request.max_shrink_percent) {
        return Err(ImportError::Shrink {
            registry: registry.id.clone(),
            controller,
            before,
            after,
            max_percent: request.max_shrink_percent,
        });
    }
    if file_numbers == 0 {
        return Err(ImportError::Empty {
            registry: registry.id.clone(),
            controller,
            file: request.file.display().to_string(),
            lines,
        });
    }
    Ok(())
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
    let started = std::time::Instant::now();
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    if request.checked_at > today {
        return Err(ImportError::CheckedAtInFuture(request.checked_at));
    }
    let coverage = request
        .covers
        .as_ref()
        .map(|c| parse_coverage(c, registry))
        .transpose()?;
    let progress = (request.progress && std::io::stderr().is_terminal()).then(|| {
        let size = std::fs::metadata(&request.file)
            .map(|m| m.len())
            .unwrap_or(0);
        let pb = indicatif::ProgressBar::new(size);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_message(format!("parsing {}", registry.id));
        pb
    });
    let keep_all = request.max_rejects > 0;
    let (format, parsed) = with_input(&request.file, progress.as_ref(), |reader| {
        parse(reader, request.format.clone(), registry.country, keep_all)
    })?;
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    if parsed.unterminated && !request.accept_unterminated_last_line {
        return Err(ImportError::EndsMidLine(request.file.display().to_string()));
    }
    // A block-list's change list (a file with an action column) read as a
    // replace becomes the whole list (its deletions dropped, every other
    // number clear); read as a remove, its additions are removed too
    // (newly registered numbers un-listed), even in a file of additions
    // only. It is read with --mode add alone. (An allow-list's answers with
    // an action column may replace: the cleared lines are the new set.)
    if registry.kind == RegistryKind::Blocklist
        && format.is_change_list()
        && request.mode != ImportMode::Add
    {
        return Err(ImportError::ChangeListNotAdded {
            file: request.file.display().to_string(),
            mode: request.mode.as_str(),
        });
    }
    // A change list read with --mode remove: its add lines would be
    // removed with its delete lines, un-listing newly registered numbers.
    if request.mode == ImportMode::Remove
        && !parsed.removals.is_empty()
        && !parsed.numbers.is_empty()
    {
        return Err(ImportError::ChangeListRemoved {
            file: request.file.display().to_string(),
            adds: parsed.numbers.len(),
            removals: parsed.removals.len(),
        });
    }
    if let Some(coverage) = &coverage
        && registry.kind == RegistryKind::Blocklist
        && request.mode == ImportMode::Replace
        && !request.allow_narrow_file
    {
        super::coverage_check::check(
            &parsed.numbers,
            coverage,
            &registry.country.calling_code().to_string(),
        )?;
    }
    if parsed.reject_count > request.max_rejects {
        let mut rejects = parsed.rejects;
        rejects.truncate(LISTED_REJECTS);
        return Err(ImportError::BadLines(rejects, parsed.reject_count));
    }
    if parsed.reject_count > 0
        && let Some(path) = &request.rejects_file
    {
        let mut out =
            std::io::BufWriter::new(crate::private::create_file(path).map_err(ImportError::Write)?);
        for reject in &parsed.rejects {
            writeln!(out, "{}\t{}", reject.line, reject.problem).map_err(ImportError::Write)?;
        }
        out.flush().map_err(ImportError::Write)?;
    }

    let _lock = file::lock(dir, &registry.id).map_err(ImportError::Write)?;
    // Under the lock: temporaries of this registry are leftovers of a
    // failed or killed import.
    for path in file::remove_temporaries(dir, &registry.id) {
        tracing::warn!(path = %path.display(), "removed a leftover temporary snapshot file");
    }
    let previous = file::read(dir, &registry.id)?;
    let numbers = parsed.numbers.len();
    let removals = parsed.removals.len();
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
            // The snapshot alone must not clear what a later answer
            // withheld: the opposed answers live in the contact records,
            // and a restore without them (a lost store) served the older
            // clearance (found by review).
            removals: if registry.kind == RegistryKind::Allowlist {
                &parsed.removals | &request.withheld
            } else {
                parsed.removals
            },
            coverage,
            continues: request.changes_since,
            older_than_replace: request.older_than_replace,
            source: SnapshotSource {
                file: request.file.display().to_string(),
                format: format.name().to_string(),
                mode: request.mode.as_str().to_string(),
                import_seconds: started.elapsed().as_secs_f64(),
            },
        },
        now,
    )?;
    check_shrink(
        registry,
        request,
        previous.as_ref(),
        &next,
        numbers + removals,
        parsed.lines,
    )?;
    if !request.dry_run {
        file::write(dir, &next).map_err(ImportError::Write)?;
    }
    Ok(ImportSummary {
        registry_id: registry.id.clone(),
        format: format.name(),
        lines: parsed.lines,
        numbers,
        removals,
        duplicates: parsed.duplicates,
        rejected: parsed.reject_count,
        numbers_before: previous.as_ref().map_or(0, Snapshot::len),
        numbers_after: next.len(),
        version: next.version,
        dry_run: request.dry_run,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::NumberKey;

    fn it() -> Region {
        Region::parse("IT").unwrap()
    }

    fn parse_lines(text: &str) -> ParsedNumbers {
        parse(text.as_bytes(), Some(Format::Lines), it(), false)
            .unwrap()
            .1
    }

    #[test]
    fn test_lines_accepts_common_notations_and_comments() {
        let text =
            "# RPO result\n+39 333 123 4567\n0039 333 1234567\n\n02 8765 4321\r\n333-1234568\n";
        let parsed = parse_lines(text);
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
        let parsed = parse_lines("+39 333 123 4567\nhello\n+1 212 555 0123\n12\n");
        assert_eq!(parsed.reject_count, 3);
        assert_eq!(
            parsed.rejects.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert!(
            parsed.rejects[0].problem.contains("hello"),
            "{:?}",
            parsed.rejects[0]
        );
        assert!(
            parsed.rejects[1].problem.contains("not IT"),
            "{:?}",
            parsed.rejects[1]
        );
    }

    #[test]
    fn test_reject_list_is_capped() {
        let parsed = parse_lines(&"x\n".repeat(25));
        let message = ImportError::BadLines(parsed.rejects, parsed.reject_count).to_string();
        assert!(message.starts_with("25 bad line(s)"), "{message}");
        assert!(
            message.contains("line 20:") && !message.contains("line 21:"),
            "{message}"
        );
        assert!(message.ends_with("and 5 more"), "{message}");
    }

    #[test]
    fn test_shrink_threshold() {
        assert!(!shrinks_too_much(0, 0, 10));
        assert!(!shrinks_too_much(10, 9, 10));
        assert!(shrinks_too_much(10, 8, 10));
        assert!(shrinks_too_much(10, 0, 100), "empty is never a mere shrink");
        assert!(!shrinks_too_much(10, 1, 100));
        assert!(shrinks_too_much(1000, 999, 0));
        assert!(!shrinks_too_much(u64::MAX, u64::MAX - 1, 1));
        assert!(!shrinks_too_much(5, 50, 0));
    }

    #[test]
    fn test_overlong_line_is_an_error_with_an_excerpt() {
        let text = format!("+39 333 123 4567\n{}\n", "9".repeat(MAX_LINE_BYTES + 1));
        let err = parse(text.as_bytes(), Some(Format::Lines), it(), false).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("line 2: longer than 4096 bytes"),
            "{message}"
        );
        assert!(message.len() < 200, "{message}");
        // Exactly the limit is fine (it is just a bad number).
        let text = format!("{}\n", "9".repeat(MAX_LINE_BYTES));
        let parsed = parse_lines(&text);
        assert_eq!(parsed.reject_count, 1);
        assert!(
            parsed.rejects[0].problem.len() < 300,
            "{:?}",
            parsed.rejects[0]
        );
    }

    #[test]
    fn test_auto_falls_back_to_lines_per_line() {
        let us = Region::parse("US").unwrap();
        let (format, parsed) = parse(
            "2127361234\n(212) 736-1235\n# note\n212,7361237\n".as_bytes(),
            None,
            us,
            false,
        )
        .unwrap();
        assert_eq!(format, Format::Ftc);
        assert_eq!(parsed.reject_count, 0, "{:?}", parsed.rejects);
        assert_eq!(parsed.numbers.len(), 3);
    }

    #[test]
    fn test_detects_ftc_and_builds_the_exact_set() {
        let us = Region::parse("US").unwrap();
        let (format, parsed) = parse(
            "212,5550199\n646,5550142\n212,5550199\n".as_bytes(),
            None,
            us,
            false,
        )
        .unwrap();
        assert_eq!(format, Format::Ftc);
        assert_eq!(parsed.numbers.len(), 2);
        assert_eq!(parsed.duplicates, 1);
    }

    /// In a file detected as TPS, a line with more after its 12-character
    /// number field was read whole by the general parser, its digits joined:
    /// `0169772345  1` became +441697723451, another number, and the
    /// registered one went unlisted (found by review). It is refused now;
    /// `--format tps` reads the field alone.
    #[test]
    fn test_a_detected_tps_file_refuses_a_line_with_more_after_the_field() {
        let gb = Region::parse("GB").unwrap();
        let text = "02079460000 \n0169772345  1\n";
        let (format, parsed) = parse(text.as_bytes(), None, gb, false).unwrap();
        assert_eq!(format, Format::Tps);
        assert_eq!(parsed.reject_count, 1, "{:?}", parsed.rejects);
        assert_eq!(parsed.rejects[0].line, 2);
        assert!(
            parsed.rejects[0].problem.contains("--format tps"),
            "{:?}",
            parsed.rejects[0]
        );
        assert!(
            !parsed
                .numbers
                .contains(NumberKey::from_e164("+441697723451").unwrap().0)
        );
        // The same line first (the file then detected as lines), or after
        // a header line (found by review).
        for text in [
            "0169772345  1\n02079460000 \n",
            "number,flag\n0169772345  1\n",
            // Padded in front (found by review).
            "  0169772345 1\r\n0169772345  \r\n",
        ] {
            let (_, parsed) = parse(text.as_bytes(), None, gb, false).unwrap();
            assert!(
                parsed
                    .rejects
                    .iter()
                    .any(|r| r.problem.contains("--format tps")),
                "{text:?}: {:?}",
                parsed.rejects
            );
            assert!(
                !parsed
                    .numbers
                    .contains(NumberKey::from_e164("+441697723451").unwrap().0)
            );
        }
        let (_, explicit) = parse(text.as_bytes(), Some(Format::Tps), gb, false).unwrap();
        assert_eq!(explicit.reject_count, 0);
        assert!(
            explicit
                .numbers
                .contains(NumberKey::from_e164("+44169772345").unwrap().0)
        );
    }

    /// A UTF-8 byte-order mark before the first line (a file saved by a
    /// spreadsheet or an editor) is skipped: it refused the first number
    /// and hid the file's format (found by review).
    #[test]
    fn test_a_byte_order_mark_is_not_part_of_the_first_line() {
        let us = Region::parse("US").unwrap();
        let ftc = "\u{feff}212,5550199\n646,5550142\n";
        for format in [None, Some(Format::Ftc)] {
            let (detected, parsed) = parse(ftc.as_bytes(), format.clone(), us, false).unwrap();
            assert_eq!(detected, Format::Ftc);
            assert_eq!(
                (parsed.numbers.len(), parsed.reject_count),
                (2, 0),
                "{format:?}"
            );
            assert!(
                parsed
                    .numbers
                    .contains(NumberKey::from_e164("+12125550199").unwrap().0)
            );
        }
        let parsed = parse_lines("\u{feff}+39 333 123 4567\n");
        assert_eq!((parsed.numbers.len(), parsed.reject_count), (1, 0));
    }
}
