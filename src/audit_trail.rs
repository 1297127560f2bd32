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
}

/// Default rotation size: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

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
}

struct State {
    path: PathBuf,
    file: File,
    written: u64,
    seq: u64,
    last_hash: String,
    max_bytes: u64,
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

/// Checks one line on its own: returns (seq, prev, hash) when its hash matches its bytes.
fn check_line(line: &str) -> Result<(u64, String, String), String> {
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
    Ok((seq, prev, hash.to_string()))
}

/// Verifies `files` in order as one chain (rotated files first, the current one last).
pub fn verify(files: &[PathBuf]) -> Result<ChainSummary, ChainBreak> {
    let mut expected_prev = GENESIS.to_string();
    let mut expected_seq: Option<u64> = None;
    let mut records = 0u64;
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
            let (seq, prev, hash) = check_line(line).map_err(|r| brk(i + 1, r))?;
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
    Ok(ChainSummary {
        records,
        last_hash: expected_prev,
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
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let (seq, last_hash) = match last_line(&mut file, &path)? {
            None => (0, GENESIS.to_string()),
            Some(line) => {
                let (seq, _, hash) =
                    check_line(&line).map_err(|reason| AuditTrailError::Damaged {
                        path: path.clone(),
                        reason,
                    })?;
                (seq + 1, hash)
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
        let mut body = String::with_capacity(fields.len() + 200);
        body.push_str("{\"seq\":");
        body.push_str(itoa::Buffer::new().format(st.seq));
        body.push_str(",\"time\":\"");
        let mut ts = Vec::with_capacity(32);
        crate::server::access_log::write_rfc3339(&mut ts, std::time::SystemTime::now());
        body.push_str(std::str::from_utf8(&ts).unwrap_or(""));
        body.push('"');
        if !fields.is_empty() {
            body.push(',');
            body.push_str(fields);
        }
        body.push_str(",\"prev\":\"");
        body.push_str(&st.last_hash);
        body.push('"');
        let hash = hex(&Sha256::digest(body.as_bytes()));
        let line = format!("{body},\"hash\":\"{hash}\"}}\n");
        if let Err(e) = st.rotate_if_full(line.len() as u64) {
            st.failures += 1;
            tracing::error!(target: "pfgate::audit", error = %e, "audit trail rotation failed; writing on in the current file");
        }
        match st.file.write_all(line.as_bytes()) {
            Ok(()) => {
                st.written += line.len() as u64;
                st.seq += 1;
                st.last_hash = hash;
            }
            Err(e) => {
                st.failures += 1;
                let path = st.path.display().to_string();
                tracing::error!(target: "pfgate::audit", file = %path, error = %e, "audit trail write failed: this record is missing from the trail");
            }
        }
    }

    /// Records that could not be written since start.
    pub fn failures(&self) -> u64 {
        self.state.lock().map(|s| s.failures).unwrap_or(0)
    }
}

impl State {
    fn rotate_if_full(&mut self, next: u64) -> Result<(), AuditTrailError> {
        if self.max_bytes == 0 || self.written == 0 || self.written + next <= self.max_bytes {
            return Ok(());
        }
        let last = self.seq.saturating_sub(1);
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(format!(".{last:020}"));
        let rotated = PathBuf::from(rotated);
        let _ = self.file.sync_all();
        std::fs::rename(&self.path, &rotated).map_err(io(&self.path))?;
        self.file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        self.written = 0;
        Ok(())
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

    #[test]
    fn rotation_keeps_one_chain_across_files() {
        let f = temp("rotate");
        let t = AuditTrail::open(&settings(&f, 600)).unwrap();
        for i in 0..10 {
            t.append(&format!("\"event\":\"e{i}\""));
        }
        drop(t);
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
