//! The audit trail: an append-only file of JSON lines in which each record carries the hash of the
//! one before it, so that removing, reordering or editing a line is detectable
//! (`pfgate audit verify`).
//!
//! Why a chain and not just a file: the audit events also go to the log (`pfgate::audit`), but a
//! log is easy to edit without trace. Here every line ends with `"hash"`, the SHA-256 of the line's
//! own bytes before that field — which include `"prev"`, the previous line's hash. Changing one
//! byte breaks that line's hash; deleting a line breaks the next line's `prev`; truncating the
//! end is visible against the last hash an operator noted or shipped elsewhere (the newest hash is
//! printed by `verify`). The hash covers the bytes exactly as written, so verifying never depends on
//! how a JSON library would re-serialise a record.
//!
//! Line layout: `{"seq":N,"time":"…",…fields…,"prev":"<64 hex>","hash":"<64 hex>"}`. The first
//! record of a new trail has `prev` = 64 zeros. Rotation (`max_bytes`) renames the file to
//! `FILE.<seq of its last record, 20 digits>` and continues the chain in a new `FILE`, so the
//! rotated files and the current one, in order, verify as one chain.
//!
//! Retention (`keep_files`, `max_total_bytes`) deletes the oldest rotated files and then writes an
//! `audit_retention` record naming the first record kept (`kept_from_seq`) and the hash it
//! continues from (`kept_from_prev`). `verify` accepts a chain that does not start at the genesis
//! only when such a record, inside the chain and so itself protected by it, accounts for the
//! start; files removed by anyone else leave a start no record names, and are reported.
//!
//! The files are created owner-only (0600 on Unix): they name every caller and user.
//!
//! A write failure is logged at `error` and counted; the decision it records stands (the answer has
//! already been computed, and refusing every authentication because a disk is full would turn an
//! audit problem into an outage). Operators who need fail-closed auditing watch that error.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// `[audit]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditTrailSettings {
    /// The current file.
    pub file: PathBuf,
    /// Size at which the file is rotated (0 = never).
    pub max_bytes: u64,
    /// Rotated files kept (0 = all).
    pub keep_files: usize,
    /// Most bytes of rotated files kept (0 = no bound).
    pub max_total_bytes: u64,
}

/// Default rotation size: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Rotated files kept by default: with the default size, at most ~1 GiB besides the current file.
pub const DEFAULT_KEEP_FILES: usize = 16;

/// A record's fixed part besides its fields: seq, time, prev, hash and their keys (for deciding
/// whether a record still fits before rotating).
const RECORD_OVERHEAD: u64 = 200;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_SUFFIX_LEN: usize = ",\"hash\":\"\"}".len() + 64;

/// Why the trail cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditTrailError {
    /// File system error.
    #[error("audit trail {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The existing file does not end in a valid record, so the chain cannot be continued.
    #[error("audit trail {path}: its last line is not a valid record ({reason}); check it with `pfgate audit verify` and move it aside to start a new trail")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", .file.display())]
pub struct ChainBreak {
    /// File.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// A verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Records read.
    pub records: u64,
    /// Hash of the last record (`GENESIS` when empty).
    pub last_hash: String,
    /// When retention removed the oldest files: the first kept record's seq and the hash it
    /// continues from (named by an `audit_retention` record in the chain).
    pub continues_from: Option<(u64, String)>,
}

/// One line that checked out on its own.
struct Checked {
    seq: u64,
    prev: String,
    hash: String,
    /// For an `audit_retention` record: the first record kept and the hash it continues from.
    retention: Option<(u64, String)>,
}

struct State {
    path: PathBuf,
    file: File,
    written: u64,
    seq: u64,
    last_hash: String,
    max_bytes: u64,
    keep_files: usize,
    max_total_bytes: u64,
    failures: u64,
}

/// An open trail. Appends are serialised by a mutex and written with one `write` each, so
/// concurrent requests never interleave lines.
pub struct AuditTrail {
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTrail").finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditTrailError + '_ {
    move |source| AuditTrailError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Checks one line on its own: its seq, prev and hash when the hash matches its bytes.
fn check_line(line: &str) -> Result<Checked, String> {
    if line.len() < HASH_SUFFIX_LEN || !line.ends_with("\"}") {
        return Err("not a record line".into());
    }
    let (body, suffix) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    let hash = suffix
        .strip_prefix(",\"hash\":\"")
        .and_then(|s| s.strip_suffix("\"}"))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("no hash field at the end of the line")?;
    let computed = hex(&Sha256::digest(body.as_bytes()));
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        computed.as_bytes(),
        hash.as_bytes(),
    )) {
        return Err("the line's hash does not match its contents (edited)".into());
    }
    let value: serde_json::Value =
        serde_json::from_str(&format!("{body}}}")).map_err(|e| format!("not JSON: {e}"))?;
    let seq = value
        .get("seq")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no seq")?;
    let prev = value
        .get("prev")
        .and_then(serde_json::Value::as_str)
        .ok_or("no prev")?
        .to_string();
    let retention = (value.get("event").and_then(serde_json::Value::as_str)
        == Some(RETENTION_EVENT))
    .then(|| {
        let from = value.get("kept_from_seq")?.as_u64()?;
        let prev = value.get("kept_from_prev")?.as_str()?;
        Some((from, prev.to_string()))
    })
    .flatten();
    Ok(Checked {
        seq,
        prev,
        hash: hash.to_string(),
        retention,
    })
}

/// The event name of the record retention writes.
const RETENTION_EVENT: &str = "audit_retention";

/// Verifies `files` in order as one chain (rotated files first, the current one last).
pub fn verify(files: &[PathBuf]) -> Result<ChainSummary, ChainBreak> {
    let mut expected_prev = GENESIS.to_string();
    let mut expected_seq: Option<u64> = None;
    let mut records = 0u64;
    // A chain that starts after the genesis: where, and whether a retention record named it.
    let mut start: Option<(u64, String)> = None;
    let mut start_accounted = false;
    for file in files {
        let brk = |line: usize, reason: String| ChainBreak {
            file: file.clone(),
            line,
            reason,
        };
        let text = std::fs::read_to_string(file).map_err(|e| brk(0, e.to_string()))?;
        if !text.is_empty() && !text.ends_with('\n') {
            let n = text.lines().count();
            return Err(brk(n, "the last line is incomplete (torn write)".into()));
        }
        for (i, line) in text.lines().enumerate() {
            let Checked {
                seq,
                prev,
                hash,
                retention,
            } = check_line(line).map_err(|r| brk(i + 1, r))?;
            if records == 0 && prev != GENESIS {
                expected_prev = prev.clone();
                start = Some((seq, prev.clone()));
            }
            if retention.is_some() && retention == start {
                start_accounted = true;
            }
            if prev != expected_prev {
                return Err(brk(
                    i + 1,
                    "prev does not match the previous record's hash (a record before this one was removed or changed)"
                        .into(),
                ));
            }
            if let Some(want) = expected_seq {
                if seq != want {
                    return Err(brk(i + 1, format!("seq {seq} where {want} was expected")));
                }
            }
            expected_seq = Some(seq + 1);
            expected_prev = hash;
            records += 1;
        }
    }
    if let (Some((seq, _)), false) = (&start, start_accounted) {
        return Err(ChainBreak {
            file: files.first().cloned().unwrap_or_default(),
            line: 1,
            reason: format!(
                "the chain starts at record {seq}, not at its beginning, and no audit_retention \
                 record accounts for the records before it (files were removed)"
            ),
        });
    }
    Ok(ChainSummary {
        records,
        last_hash: expected_prev,
        continues_from: start,
    })
}

/// The last complete line of `file`, reading at most the final 64 KiB.
fn last_line(file: &mut File, path: &Path) -> Result<Option<String>, AuditTrailError> {
    let len = file.seek(SeekFrom::End(0)).map_err(io(path))?;
    if len == 0 {
        return Ok(None);
    }
    let start = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start)).map_err(io(path))?;
    let mut tail = Vec::new();
    file.take(64 * 1024)
        .read_to_end(&mut tail)
        .map_err(io(path))?;
    let damaged = |reason: &str| AuditTrailError::Damaged {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if tail.last() != Some(&b'\n') {
        return Err(damaged("the file does not end with a complete line"));
    }
    let text = String::from_utf8(tail).map_err(|_| damaged("not UTF-8"))?;
    Ok(text.lines().last().map(str::to_string))
}

impl AuditTrail {
    /// Opens (or creates) the trail and continues its chain from the last record.
    pub fn open(settings: &AuditTrailSettings) -> Result<Self, AuditTrailError> {
        let path = settings.file.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        crate::core::at_rest::warn_if_exposed(&path, "audit trail");
        let mut file = open_owner_only(&path)?;
        let (seq, last_hash) = match last_line(&mut file, &path)? {
            None => (0, GENESIS.to_string()),
            Some(line) => {
                let checked = check_line(&line).map_err(|reason| AuditTrailError::Damaged {
                    path: path.clone(),
                    reason,
                })?;
                (checked.seq + 1, checked.hash)
            }
        };
        let written = file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        Ok(Self {
            state: Mutex::new(State {
                path,
                file,
                written,
                seq,
                last_hash,
                max_bytes: settings.max_bytes,
                keep_files: settings.keep_files,
                max_total_bytes: settings.max_total_bytes,
                failures: 0,
            }),
        })
    }

    /// Appends one record. `fields` is the inside of a JSON object (`"k":v,…`, already escaped),
    /// placed between `time` and `prev`.
    pub fn append(&self, fields: &str) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match st.rotate_if_full(fields.len() as u64 + RECORD_OVERHEAD) {
            Ok(Some(kept_from)) => st.write_record(&retention_fields(&kept_from)),
            Ok(None) => {}
            Err(e) => {
                st.failures += 1;
                tracing::error!(target: "pfgate::audit", error = %e, "audit trail rotation failed; writing on in the current file");
            }
        }
        st.write_record(fields);
    }

    /// Records that could not be written since start.
    pub fn failures(&self) -> u64 {
        self.state.lock().map(|s| s.failures).unwrap_or(0)
    }
}

/// The fields of the record retention writes after deleting files.
fn retention_fields(kept_from: &(u64, String)) -> String {
    format!(
        "\"event\":\"{RETENTION_EVENT}\",\"kept_from_seq\":{},\"kept_from_prev\":\"{}\"",
        kept_from.0, kept_from.1
    )
}

/// Opens (creating owner-only) a trail file for appending.
fn open_owner_only(path: &Path) -> Result<File, AuditTrailError> {
    crate::core::at_rest::create_owner_only(path).map_err(io(path))?;
    OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(io(path))
}

/// The seq and prev of the first record in `file` (`None` for an empty or unreadable file).
fn first_record(file: &Path) -> Option<(u64, String)> {
    use std::io::BufRead as _;
    let f = File::open(file).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(f.take(64 * 1024))
        .read_line(&mut line)
        .ok()?;
    let c = check_line(line.trim_end_matches('\n')).ok()?;
    Some((c.seq, c.prev))
}

impl State {
    /// Writes one record with the next seq, chained to the last.
    fn write_record(&mut self, fields: &str) {
        let mut body = String::with_capacity(fields.len() + 200);
        body.push_str("{\"seq\":");
        body.push_str(itoa::Buffer::new().format(self.seq));
        body.push_str(",\"time\":\"");
        let mut ts = Vec::with_capacity(32);
        crate::telemetry::access_log::write_rfc3339(&mut ts, std::time::SystemTime::now());
        body.push_str(std::str::from_utf8(&ts).unwrap_or(""));
        body.push('"');
        if !fields.is_empty() {
            body.push(',');
            body.push_str(fields);
        }
        body.push_str(",\"prev\":\"");
        body.push_str(&self.last_hash);
        body.push('"');
        let hash = hex(&Sha256::digest(body.as_bytes()));
        let line = format!("{body},\"hash\":\"{hash}\"}}\n");
        match self.file.write_all(line.as_bytes()) {
            Ok(()) => {
                self.written += line.len() as u64;
                self.seq += 1;
                self.last_hash = hash;
            }
            Err(e) => {
                self.failures += 1;
                let path = self.path.display().to_string();
                tracing::error!(target: "pfgate::audit", file = %path, error = %e, "audit trail write failed: this record is missing from the trail");
            }
        }
    }

    /// Rotates when a record of about `next` bytes would pass `max_bytes`, then applies retention.
    /// Returns the first kept record (seq and the hash it continues from) when files were deleted.
    fn rotate_if_full(&mut self, next: u64) -> Result<Option<(u64, String)>, AuditTrailError> {
        if self.max_bytes == 0 || self.written == 0 || self.written + next <= self.max_bytes {
            return Ok(None);
        }
        let last = self.seq.saturating_sub(1);
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(format!(".{last:020}"));
        let rotated = PathBuf::from(rotated);
        let _ = self.file.sync_all();
        std::fs::rename(&self.path, &rotated).map_err(io(&self.path))?;
        self.file = open_owner_only(&self.path)?;
        self.written = 0;
        Ok(self.apply_retention())
    }

    /// Deletes the oldest rotated files past `keep_files` or `max_total_bytes`. Returns where the
    /// kept chain now starts when anything was deleted (the current file's next record when no
    /// rotated file is left).
    fn apply_retention(&mut self) -> Option<(u64, String)> {
        let mut rotated = chain_files(&self.path);
        rotated.pop(); // the current file
        let size = |f: &PathBuf| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        let mut total: u64 = rotated.iter().map(size).sum();
        let mut deleted = 0usize;
        while let Some(oldest) = rotated.first() {
            let too_many = self.keep_files > 0 && rotated.len() > self.keep_files;
            let too_big = self.max_total_bytes > 0 && total > self.max_total_bytes;
            if !too_many && !too_big {
                break;
            }
            let bytes = size(oldest);
            if let Err(e) = std::fs::remove_file(oldest) {
                self.failures += 1;
                tracing::error!(target: "pfgate::audit", file = %oldest.display(), error = %e, "audit trail retention could not delete a file");
                break;
            }
            total = total.saturating_sub(bytes);
            deleted += 1;
            rotated.remove(0);
        }
        if deleted == 0 {
            return None;
        }
        tracing::info!(target: "pfgate::audit", files = deleted, "audit trail retention deleted the oldest rotated files");
        match rotated.first() {
            Some(f) => first_record(f),
            None => Some((self.seq, self.last_hash.clone())),
        }
    }
}

/// The rotated files of `current` (`current.<20 digits>`, oldest first), then `current` itself:
/// the order `verify` wants.
pub fn chain_files(current: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let (Some(dir), Some(name)) = (current.parent(), current.file_name()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!("{}.", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(rest) = n.strip_prefix(&prefix) {
                    if rest.len() == 20 && rest.bytes().all(|b| b.is_ascii_digit()) {
                        files.push(e.path());
                    }
                }
            }
        }
    }
    files.sort();
    files.push(current.to_path_buf());
    files
}

static TRAIL: OnceLock<AuditTrail> = OnceLock::new();

/// Makes `trail` the process's audit trail (once; the serve command calls it at start).
pub fn install(trail: AuditTrail) -> bool {
    TRAIL.set(trail).is_ok()
}

/// Appends a record to the installed trail, if any.
pub fn record(fields: &str) {
    if let Some(t) = TRAIL.get() {
        t.append(fields);
    }
}

/// True when a trail is installed (so callers can skip building the fields).
pub fn installed() -> bool {
    TRAIL.get().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pfgate-audit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("audit.jsonl")
    }

    fn settings(file: &Path, max_bytes: u64) -> AuditTrailSettings {
        AuditTrailSettings {
            file: file.to_path_buf(),
            max_bytes,
            keep_files: 0,
            max_total_bytes: 0,
        }
    }

    #[test]
    fn a_written_chain_verifies_and_continues_across_reopen() {
        let f = temp("reopen");
        let t = AuditTrail::open(&settings(&f, 0)).unwrap();
        t.append(r#""event":"a""#);
        t.append(r#""event":"b""#);
        drop(t);
        let t = AuditTrail::open(&settings(&f, 0)).unwrap();
        t.append(r#""event":"c""#);
        let s = verify(std::slice::from_ref(&f)).unwrap();
        assert_eq!(s.records, 3);
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains(&format!("\"prev\":\"{GENESIS}\"")));
        // Each line's hash, computed here independently, is the next line's prev.
        let h0 = hex(&Sha256::digest(
            &lines[0].as_bytes()[..lines[0].len() - HASH_SUFFIX_LEN],
        ));
        assert!(lines[0].ends_with(&format!(",\"hash\":\"{h0}\"}}")));
        assert!(lines[1].contains(&format!("\"prev\":\"{h0}\"")));
        assert!(lines[2].starts_with("{\"seq\":2,"));
    }

    #[test]
    fn edits_removals_and_torn_lines_are_found() {
        let f = temp("tamper");
        let t = AuditTrail::open(&settings(&f, 0)).unwrap();
        for e in ["a", "b", "c"] {
            t.append(&format!("\"event\":\"{e}\""));
        }
        drop(t);
        let good = std::fs::read_to_string(&f).unwrap();

        std::fs::write(&f, good.replacen("\"event\":\"b\"", "\"event\":\"x\"", 1)).unwrap();
        let e = verify(std::slice::from_ref(&f)).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("edited"), "{e}");

        let lines: Vec<&str> = good.lines().collect();
        std::fs::write(&f, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        let e = verify(std::slice::from_ref(&f)).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("prev"), "{e}");

        std::fs::write(&f, &good[..good.len() - 5]).unwrap();
        let e = verify(std::slice::from_ref(&f)).unwrap_err();
        assert!(e.reason.contains("torn"), "{e}");
        assert!(matches!(
            AuditTrail::open(&settings(&f, 0)),
            Err(AuditTrailError::Damaged { .. })
        ));
    }

    fn write_events(t: &AuditTrail, n: usize) {
        for i in 0..n {
            t.append(&format!("\"event\":\"e{i}\""));
        }
    }

    #[test]
    fn retention_keeps_a_verifiable_chain_and_deleting_by_hand_is_found() {
        let f = temp("retention");
        let t = AuditTrail::open(&AuditTrailSettings {
            keep_files: 2,
            ..settings(&f, 600)
        })
        .unwrap();
        write_events(&t, 30);
        drop(t);
        let files = chain_files(&f);
        assert_eq!(files.len(), 3, "{files:?}");
        let s = verify(&files).unwrap();
        let (from, prev) = s.continues_from.clone().unwrap();
        assert!(from > 0 && prev != GENESIS, "{s:?}");
        // The first kept record is the one the retention record names.
        let first = std::fs::read_to_string(&files[0]).unwrap();
        assert!(first.starts_with(&format!("{{\"seq\":{from},")), "{first}");
        assert!(first.lines().next().unwrap().contains(&prev));
        // Dropping the oldest kept file by hand leaves a start no retention record names.
        let e = verify(&files[1..]).unwrap_err();
        assert!(e.reason.contains("no audit_retention"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn trail_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let f = temp("mode");
        write_events(&AuditTrail::open(&settings(&f, 300)).unwrap(), 5);
        for file in chain_files(&f) {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }

    #[test]
    fn rotation_keeps_one_chain_across_files() {
        let f = temp("rotate");
        write_events(&AuditTrail::open(&settings(&f, 600)).unwrap(), 10);
        let files = chain_files(&f);
        assert!(files.len() >= 3, "{files:?}");
        assert_eq!(verify(&files).unwrap().records, 10);
        // A missing middle file breaks the chain at the next file's first line.
        let mut gap = files.clone();
        gap.remove(1);
        let e = verify(&gap).unwrap_err();
        assert_eq!((e.file.clone(), e.line), (gap[1].clone(), 1), "{e}");
    }
}
