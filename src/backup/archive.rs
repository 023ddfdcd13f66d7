//! The backup file: a tar stream of `manifest.json` and one JSON-lines part per table,
//! compressed with zstd (with its frame checksum) and, when a recipient is given, encrypted
//! with age. Parts are staged in a folder first because a tar entry states its size up front.

use super::BackupError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "herald-backup";
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";
pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    /// Layout of the tables ([`super::catalog::LAYOUT_VERSION`]).
    pub layout: u32,
    pub herald_version: String,
    /// Where it was taken from: `sqlite` or `postgres`, and that database's migration version.
    pub source: String,
    pub source_schema: i64,
    /// When the snapshot's read transaction began (RFC 3339 and Unix milliseconds).
    pub created_at: String,
    pub created_at_ms: i64,
    /// The full state at the snapshot: every table's rows and SHA-256. An incremental
    /// states them too, but carries only `changes`.
    pub tables: Vec<Part>,
    /// For an incremental: its parent and chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<super::chain::Link>,
    /// For an incremental: per table, the rows upserted and the keys deleted since the parent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Part>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Part {
    pub name: String,
    pub file: String,
    pub columns: Vec<String>,
    pub rows: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.tables.iter().find(|p| p.name == name)
    }
    /// The parts the file holds: the tables of a full backup, the changes of an incremental.
    pub fn carried(&self) -> &[Part] {
        if self.link.is_some() {
            &self.changes
        } else {
            &self.tables
        }
    }
}

/// Writes one table's rows as JSON lines, hashing and counting as it goes.
pub struct PartWriter {
    out: BufWriter<File>,
    hash: Sha256,
    rows: u64,
    name: String,
    file: String,
    columns: Vec<String>,
}

impl PartWriter {
    pub fn create(dir: &Path, table: &super::catalog::Table) -> Result<Self, BackupError> {
        let file = format!("tables/{}.jsonl", table.name);
        let path = dir.join(&file);
        if let Some(parent) = path.parent() {
            crate::private_fs::dir(parent)?;
        }
        Ok(PartWriter {
            out: BufWriter::with_capacity(256 * 1024, crate::private_fs::create(&path)?),
            hash: Sha256::new(),
            rows: 0,
            name: table.name.to_string(),
            file,
            columns: table.columns.iter().map(|(c, _)| c.to_string()).collect(),
        })
    }

    pub fn row(&mut self, values: &[serde_json::Value]) -> Result<(), BackupError> {
        let mut line = serde_json::to_vec(values)
            .map_err(|e| BackupError::Corrupt(format!("{}: {e}", self.name)))?;
        line.push(b'\n');
        self.hash.update(&line);
        self.out.write_all(&line)?;
        self.rows += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<Part, BackupError> {
        self.out.flush()?;
        Ok(Part {
            name: self.name,
            file: self.file,
            columns: self.columns,
            rows: self.rows,
            sha256: hex::encode(self.hash.finalize()),
        })
    }
}

/// The rows of a staged part, one `Vec<Value>` per line.
pub fn read_part(
    dir: &Path,
    part: &Part,
) -> Result<impl Iterator<Item = Result<Vec<serde_json::Value>, BackupError>>, BackupError> {
    let f = File::open(dir.join(&part.file))?;
    let name = part.name.clone();
    Ok(BufReader::with_capacity(256 * 1024, f)
        .lines()
        .enumerate()
        .map(move |(i, line)| {
            let line = line?;
            serde_json::from_str(&line)
                .map_err(|e| BackupError::Corrupt(format!("{name} row {}: {e}", i + 1)))
        }))
}

enum Sink {
    Plain(BufWriter<File>),
    Age(age::stream::StreamWriter<BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

impl Sink {
    fn finish(self) -> std::io::Result<BufWriter<File>> {
        match self {
            Sink::Plain(w) => Ok(w),
            Sink::Age(w) => w.finish(),
        }
    }
}

/// Parses an age recipient (`age1…`).
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, BackupError> {
    s.trim()
        .parse::<age::x25519::Recipient>()
        .map_err(|e| BackupError::Usage(format!("`{s}` is not an age recipient (age1…): {e}")))
}

/// Packs the staged parts and the manifest into `out` (written under a temporary name,
/// synced, then renamed, so a crash never leaves a half file under the final name).
pub fn write(
    staging: &Path,
    manifest: &Manifest,
    out: &Path,
    recipient: Option<&age::x25519::Recipient>,
) -> Result<u64, BackupError> {
    let partial = out.with_extension("partial");
    let file = BufWriter::with_capacity(256 * 1024, crate::private_fs::create(&partial)?);
    let sink = match recipient {
        None => Sink::Plain(file),
        Some(r) => {
            let enc = age::Encryptor::with_recipients(std::iter::once(r as &dyn age::Recipient))
                .map_err(|e| BackupError::Usage(format!("cannot encrypt: {e}")))?;
            Sink::Age(enc.wrap_output(file)?)
        }
    };
    let mut z = zstd::Encoder::new(sink, 3)?;
    z.include_checksum(true)?;
    let mut tar = tar::Builder::new(z);
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| BackupError::Corrupt(format!("manifest: {e}")))?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o600);
    header.set_mtime((manifest.created_at_ms / 1000).max(0) as u64);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST, json.as_slice())?;
    for part in manifest.carried() {
        tar.append_path_with_name(staging.join(&part.file), &part.file)?;
    }
    let z = tar.into_inner()?;
    let sink = z.finish()?;
    let file = sink.finish()?;
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, out)?;
    if let Some(dir) = out.parent() {
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(std::fs::metadata(out)?.len())
}

/// Whether a backup file is age-encrypted (by its header line).
pub fn is_encrypted(path: &Path) -> Result<bool, BackupError> {
    let mut head = [0u8; 21];
    let mut f = open_named(path)?;
    let n = read_up_to(&mut f, &mut head)?;
    Ok(&head[..n] == AGE_MAGIC)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Opens a file to read; the error names it.
fn open_named(path: &Path) -> Result<File, BackupError> {
    File::open(path).map_err(|e| {
        BackupError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot open {}: {e}", path.display()),
        ))
    })
}

/// The decrypted, decompressed stream of a backup file.
fn open_stream(path: &Path, identity: Option<&Path>) -> Result<Box<dyn Read>, BackupError> {
    let file = BufReader::with_capacity(256 * 1024, open_named(path)?);
    let plain: Box<dyn Read> = if is_encrypted(path)? {
        let Some(id_path) = identity else {
            return Err(BackupError::Encrypted(path.display().to_string()));
        };
        let ids = age::IdentityFile::from_file(id_path.display().to_string())
            .map_err(|e| BackupError::Identity(format!("{}: {e}", id_path.display())))?
            .into_identities()
            .map_err(|e| BackupError::Identity(format!("{}: {e}", id_path.display())))?;
        let dec = age::Decryptor::new_buffered(file)
            .map_err(|e| BackupError::Corrupt(format!("age header: {e}")))?;
        let reader = dec
            .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| BackupError::Identity(format!("cannot decrypt: {e}")))?;
        Box::new(reader)
    } else {
        Box::new(file)
    };
    Ok(Box::new(zstd::Decoder::new(plain)?))
}

/// Reads only the manifest (the first entry).
pub fn read_manifest(path: &Path, identity: Option<&Path>) -> Result<Manifest, BackupError> {
    let mut ar = tar::Archive::new(open_stream(path, identity)?);
    let mut entries = ar.entries().map_err(corrupt)?;
    let first = entries
        .next()
        .ok_or_else(|| BackupError::Corrupt("the archive is empty".into()))?
        .map_err(corrupt)?;
    parse_manifest(first)
}

fn parse_manifest(mut entry: impl Read) -> Result<Manifest, BackupError> {
    let mut json = Vec::new();
    entry.read_to_end(&mut json).map_err(corrupt)?;
    let m: Manifest = serde_json::from_slice(&json)
        .map_err(|e| BackupError::Corrupt(format!("manifest: {e}")))?;
    if m.format != FORMAT {
        return Err(BackupError::Corrupt(format!(
            "not a Herald backup (format `{}`)",
            m.format
        )));
    }
    Ok(m)
}

fn corrupt(e: std::io::Error) -> BackupError {
    BackupError::Corrupt(e.to_string())
}

/// Unpacks a backup into `staging`, checking each part's SHA-256 and row count against the
/// manifest. Any damage (a flipped byte, a cut file, a wrong key) is an error here.
pub fn unpack(
    path: &Path,
    identity: Option<&Path>,
    staging: &Path,
) -> Result<Manifest, BackupError> {
    let mut ar = tar::Archive::new(open_stream(path, identity)?);
    let manifest = unpack_entries(&mut ar, staging)?;
    // Read to the very end: zstd checks its frame checksum and age its last chunk there, so
    // a cut file is caught even when every part before the cut was whole.
    std::io::copy(&mut ar.into_inner(), &mut std::io::sink()).map_err(corrupt)?;
    Ok(manifest)
}

/// Whether `file` is exactly `tables/<name>.jsonl` for a table of the catalogue.
pub fn is_catalogued_part(file: &str) -> bool {
    super::catalog::TABLES.iter().any(|t| {
        file == format!("tables/{}.jsonl", t.name)
            || file == super::chain::upserts_file(t.name)
            || file == super::chain::deletes_file(t.name)
    })
}

fn unpack_entries(
    ar: &mut tar::Archive<Box<dyn Read>>,
    staging: &Path,
) -> Result<Manifest, BackupError> {
    let mut entries = ar.entries().map_err(corrupt)?;
    let first = entries
        .next()
        .ok_or_else(|| BackupError::Corrupt("the archive is empty".into()))?
        .map_err(corrupt)?;
    if first.path().map_err(corrupt)?.as_os_str() != MANIFEST {
        return Err(BackupError::Corrupt(
            "the manifest is not the first entry".into(),
        ));
    }
    let manifest = parse_manifest(first)?;
    let mut seen = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        let name: PathBuf = entry.path().map_err(corrupt)?.into_owned();
        let name = name.to_string_lossy().to_string();
        let part = manifest
            .carried()
            .iter()
            .find(|p| p.file == name)
            .ok_or_else(|| BackupError::Corrupt(format!("unexpected entry `{name}`")))?;
        // The manifest is untrusted: its file names are only ever `tables/<t>.jsonl` of a
        // catalogued table, checked before anything is written.
        if !is_catalogued_part(&part.file) {
            return Err(BackupError::Corrupt(format!(
                "entry `{}` is not a part of a catalogued table",
                part.file.chars().take(200).collect::<String>()
            )));
        }
        let dest = staging.join(&part.file);
        if let Some(parent) = dest.parent() {
            crate::private_fs::dir(parent)?;
        }
        let mut out = BufWriter::new(crate::private_fs::create(&dest)?);
        let mut hash = Sha256::new();
        let mut rows = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(corrupt)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            rows += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
            out.write_all(&buf[..n])?;
        }
        out.flush()?;
        let sum = hex::encode(hash.finalize());
        if sum != part.sha256 {
            return Err(BackupError::Corrupt(format!(
                "{}: SHA-256 {sum} does not match the manifest's {}",
                part.file, part.sha256
            )));
        }
        if rows != part.rows {
            return Err(BackupError::Corrupt(format!(
                "{}: {rows} rows, the manifest says {}",
                part.file, part.rows
            )));
        }
        seen.push(name);
    }
    for part in manifest.carried() {
        if !seen.contains(&part.file) {
            return Err(BackupError::Corrupt(format!("{} is missing", part.file)));
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod part_names {
    use super::*;

    #[test]
    fn only_catalogued_parts_are_written() {
        assert!(is_catalogued_part("tables/messages.jsonl"));
        assert!(is_catalogued_part("changes/messages.upserts.jsonl"));
        assert!(is_catalogued_part("changes/messages.deletes.jsonl"));
        for bad in [
            "../../etc/cron.d/x",
            "tables/../../x.jsonl",
            "/tmp/x",
            "tables/messages.jsonl/../../x",
            "tables/nope.jsonl",
            "tables/messages.json",
            "manifest.json",
        ] {
            assert!(!is_catalogued_part(bad), "{bad}");
        }
    }
}
