//! Incremental backups. An incremental holds only the rows that changed since its parent
//! (upserts, whole rows) and the keys of rows deleted since, per table, plus the manifest
//! of the full state it stands for (each table's row count and SHA-256, exactly as a full
//! backup taken at the same moment would have them). A chain is a full backup and the
//! incrementals after it, each naming its parent's file and that file's SHA-256.
//!
//! What changed is found by comparing each row's hash with the parent's row index: a
//! sidecar file (`<backup>.index`, zstd, 0600) beside each backup with every row's key and hash,
//! in the dump's order. Both sides are in key order, so the comparison, like applying a
//! change set, is one streaming merge; memory does not grow with the database.

use super::BackupError;
use super::archive::{Manifest, Part};
use super::catalog::{self, Table};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// An incremental's place in its chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Link {
    /// The backup this one is relative to (a file name in the same folder).
    pub parent: String,
    /// SHA-256 of that file, as it was written.
    pub parent_sha256: String,
    /// The full backup the chain starts from.
    pub base: String,
    /// 1 for the first incremental after the full one.
    pub position: u32,
}

/// The first line of an index file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexHeader {
    pub format: String,
    pub backup: String,
    pub sha256: String,
    pub layout: u32,
    /// The chain it belongs to: `None` for a full backup.
    pub link: Option<Link>,
}

pub const INDEX_FORMAT: &str = "herald-backup-index";

pub fn index_path(backup: &Path) -> PathBuf {
    let mut s = backup.as_os_str().to_owned();
    s.push(".index");
    PathBuf::from(s)
}

/// SHA-256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String, BackupError> {
    let mut f = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Key order of the dump: integers by value, text by bytes (`COLLATE "C"`).
pub fn cmp_keys(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Value::Number(p), Value::Number(q)) => {
                p.as_i64().unwrap_or(0).cmp(&q.as_i64().unwrap_or(0))
            }
            (Value::String(p), Value::String(q)) => p.as_bytes().cmp(q.as_bytes()),
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Less,
            (_, Value::Null) => Ordering::Greater,
            (Value::Number(_), _) => Ordering::Less,
            (_, Value::Number(_)) => Ordering::Greater,
            _ => x.to_string().cmp(&y.to_string()),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn key_of(t: &Table, line: &[u8]) -> Result<Vec<Value>, BackupError> {
    let row: Vec<Value> = serde_json::from_slice(line)
        .map_err(|e| BackupError::Corrupt(format!("{}: {e}", t.name)))?;
    t.key
        .iter()
        .map(|k| {
            t.columns
                .iter()
                .position(|(c, _)| c == k)
                .and_then(|i| row.get(i).cloned())
                .ok_or_else(|| BackupError::Corrupt(format!("{}: a row without its key", t.name)))
        })
        .collect()
}

fn row_hash(line: &[u8]) -> String {
    hex::encode(&Sha256::digest(line)[..16])
}

/// Lines of a zstd-compressed file (an index), without their newline.
fn index_lines(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Vec<u8>, BackupError>> + use<>, BackupError> {
    let z = zstd::Decoder::new(File::open(path)?)?;
    Ok(BufReader::with_capacity(256 * 1024, z)
        .split(b'\n')
        .map(|l| l.map_err(BackupError::from)))
}

/// Lines of a file, without their newline.
fn lines(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Vec<u8>, BackupError>> + use<>, BackupError> {
    let r = BufReader::with_capacity(256 * 1024, File::open(path)?);
    Ok(r.split(b'\n').map(|l| l.map_err(BackupError::from)))
}

/// Writes lines, hashing and counting them, into a part of the manifest.
struct LineWriter {
    out: BufWriter<File>,
    hash: Sha256,
    rows: u64,
    part: Part,
}

impl LineWriter {
    fn create(
        dir: &Path,
        name: &str,
        file: String,
        columns: Vec<String>,
    ) -> Result<Self, BackupError> {
        let path = dir.join(&file);
        if let Some(p) = path.parent() {
            crate::private_fs::dir(p)?;
        }
        Ok(LineWriter {
            out: BufWriter::with_capacity(256 * 1024, crate::private_fs::create(&path)?),
            hash: Sha256::new(),
            rows: 0,
            part: Part {
                name: name.into(),
                file,
                columns,
                rows: 0,
                sha256: String::new(),
            },
        })
    }

    fn line(&mut self, line: &[u8]) -> Result<(), BackupError> {
        self.hash.update(line);
        self.hash.update(b"\n");
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<Part, BackupError> {
        self.out.flush()?;
        self.part.rows = self.rows;
        self.part.sha256 = hex::encode(self.hash.finalize());
        Ok(self.part)
    }
}

pub fn upserts_file(t: &str) -> String {
    format!("changes/{t}.upserts.jsonl")
}

pub fn deletes_file(t: &str) -> String {
    format!("changes/{t}.deletes.jsonl")
}

fn columns(t: &Table) -> Vec<String> {
    t.columns.iter().map(|(c, _)| c.to_string()).collect()
}

/// One index entry: `[table, key, hash]`.
type Entry = (String, Vec<Value>, String);

/// The entries of an index file, read one at a time (the header line checked first).
struct IndexReader {
    rows: Reader,
    next: Option<Entry>,
    path: PathBuf,
}

impl IndexReader {
    fn open(path: &Path) -> Result<Self, BackupError> {
        let mut it = index_lines(path)?;
        let head = it
            .next()
            .ok_or_else(|| BackupError::Corrupt(format!("{}: empty index", path.display())))??;
        let header: IndexHeader = serde_json::from_slice(&head)
            .map_err(|e| BackupError::Corrupt(format!("{}: {e}", path.display())))?;
        if header.format != INDEX_FORMAT {
            return Err(BackupError::Corrupt(format!(
                "{} is not an index",
                path.display()
            )));
        }
        let mut r = IndexReader {
            rows: Reader::over(Box::new(it))?,
            next: None,
            path: path.to_path_buf(),
        };
        r.parse()?;
        Ok(r)
    }

    fn none() -> Result<Self, BackupError> {
        Ok(IndexReader {
            rows: Reader::rows(None)?,
            next: None,
            path: PathBuf::new(),
        })
    }

    fn peek(&self) -> Option<&Entry> {
        self.next.as_ref()
    }

    fn parse(&mut self) -> Result<(), BackupError> {
        self.next = self
            .rows
            .line
            .as_deref()
            .map(|l| {
                serde_json::from_slice(l)
                    .map_err(|e| BackupError::Corrupt(format!("{}: {e}", self.path.display())))
            })
            .transpose()?;
        Ok(())
    }

    fn advance(&mut self) -> Result<(), BackupError> {
        self.rows.advance()?;
        self.parse()
    }
}

/// The header of a backup's index, when it has a readable one.
pub fn index_header(backup: &Path) -> Option<IndexHeader> {
    let mut it = index_lines(&index_path(backup)).ok()?;
    let head = it.next()?.ok()?;
    serde_json::from_slice(&head).ok()
}

/// Compares the freshly dumped state in `staging` (`tables` of its manifest) with the
/// parent's index: writes the change parts into `staging` and the new index (without its
/// header line, which the caller writes once the file's SHA-256 is known) to `index_body`.
pub fn diff(
    staging: &Path,
    tables: &[Part],
    parent_index: Option<&Path>,
    index_body: &Path,
) -> Result<Vec<Part>, BackupError> {
    // A full backup (no parent) needs only the index, not a change set.
    let full = parent_index.is_none();
    let mut parent = match parent_index {
        Some(p) => IndexReader::open(p)?,
        None => IndexReader::none()?,
    };
    let mut index = BufWriter::new(crate::private_fs::create(index_body)?);
    let mut changes = Vec::new();
    for part in tables {
        let Some(t) = catalog::table(&part.name) else {
            return Err(BackupError::Corrupt(format!(
                "unknown table `{}`",
                part.name
            )));
        };
        let mut ups = LineWriter::create(staging, t.name, upserts_file(t.name), columns(t))?;
        let keycols: Vec<String> = t.key.iter().map(|k| k.to_string()).collect();
        let mut dels = LineWriter::create(staging, t.name, deletes_file(t.name), keycols)?;
        let write_delete = |key: &[Value], dels: &mut LineWriter| -> Result<(), BackupError> {
            let k = serde_json::to_vec(key).map_err(|e| BackupError::Corrupt(e.to_string()))?;
            dels.line(&k)
        };
        for line in lines(&staging.join(&part.file))? {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            let key = key_of(t, &line)?;
            let hash = row_hash(&line);
            let mut same = false;
            let mut known = false;
            while let Some((pt, pk, ph)) = parent.peek() {
                if pt != t.name {
                    break;
                }
                match cmp_keys(pk, &key) {
                    Ordering::Less => {
                        write_delete(pk, &mut dels)?;
                        parent.advance()?;
                    }
                    Ordering::Equal => {
                        known = true;
                        same = *ph == hash;
                        parent.advance()?;
                        break;
                    }
                    Ordering::Greater => break,
                }
            }
            let unchanged = known && same;
            if !full && !unchanged {
                ups.line(&line)?;
            }
            let entry = serde_json::to_vec(&(t.name, &key, &hash))
                .map_err(|e| BackupError::Corrupt(e.to_string()))?;
            index.write_all(&entry)?;
            index.write_all(b"\n")?;
        }
        while let Some((pt, pk, _)) = parent.peek() {
            if pt != t.name {
                break;
            }
            write_delete(pk, &mut dels)?;
            parent.advance()?;
        }
        changes.push(ups.finish()?);
        changes.push(dels.finish()?);
    }
    index.flush()?;
    Ok(changes)
}

/// Writes a backup's index: the header, then the entries written by [`diff`].
pub fn write_index(backup: &Path, header: &IndexHeader, body: &Path) -> Result<(), BackupError> {
    let out = index_path(backup);
    let partial = out.with_extension("index.partial");
    // zstd: keys and hashes compress to about a quarter.
    let file = BufWriter::new(crate::private_fs::create(&partial)?);
    let mut w = zstd::Encoder::new(file, 3)?;
    let head = serde_json::to_vec(header).map_err(|e| BackupError::Corrupt(e.to_string()))?;
    w.write_all(&head)?;
    w.write_all(b"\n")?;
    std::io::copy(&mut File::open(body)?, &mut w)?;
    let f = w.finish()?.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    std::fs::rename(&partial, &out)?;
    Ok(())
}

/// The non-empty lines of a part, one read ahead (none for a part that does not exist).
struct Reader {
    lines: Box<dyn Iterator<Item = Result<Vec<u8>, BackupError>>>,
    line: Option<Vec<u8>>,
}

impl Reader {
    fn rows(path: Option<&Path>) -> Result<Self, BackupError> {
        match path {
            Some(p) => Self::over(Box::new(lines(p)?)),
            None => Self::over(Box::new(std::iter::empty())),
        }
    }

    fn over(
        lines: Box<dyn Iterator<Item = Result<Vec<u8>, BackupError>>>,
    ) -> Result<Self, BackupError> {
        let mut r = Reader { lines, line: None };
        r.advance()?;
        Ok(r)
    }

    fn advance(&mut self) -> Result<(), BackupError> {
        self.line = None;
        for l in self.lines.by_ref() {
            let l = l?;
            if !l.is_empty() {
                self.line = Some(l);
                break;
            }
        }
        Ok(())
    }

    /// The current line read as a key (the lines of a deletes part).
    fn key(&self) -> Result<Option<Vec<Value>>, BackupError> {
        self.line
            .as_deref()
            .map(|l| {
                serde_json::from_slice(l)
                    .map_err(|e| BackupError::Corrupt(format!("a deleted key: {e}")))
            })
            .transpose()
    }
}

/// Applies the change parts of `m` (unpacked in `changes_dir`) to the state in `state`,
/// writing the new state into `out`; each new part must match `m.tables` exactly.
pub fn apply(
    state: &Path,
    changes_dir: &Path,
    m: &Manifest,
    out: &Path,
) -> Result<(), BackupError> {
    for part in &m.tables {
        let Some(t) = catalog::table(&part.name) else {
            return Err(BackupError::Corrupt(format!(
                "unknown table `{}`",
                part.name
            )));
        };
        let file = format!("tables/{}.jsonl", t.name);
        let mut w = LineWriter::create(out, t.name, file.clone(), columns(t))?;
        let old = state.join(&file);
        // A table the parent did not have yet starts empty.
        let mut old = Reader::rows(old.exists().then_some(old.as_path()))?;
        let mut ups = Reader::rows(Some(&changes_dir.join(upserts_file(t.name))))?;
        let mut dels = Reader::rows(Some(&changes_dir.join(deletes_file(t.name))))?;
        loop {
            let old_key = old.line.as_deref().map(|l| key_of(t, l)).transpose()?;
            let up_key = ups.line.as_deref().map(|l| key_of(t, l)).transpose()?;
            let old_first = match (&old_key, &up_key) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(o), Some(u)) => cmp_keys(o, u) == Ordering::Less,
            };
            if let (true, Some(ok)) = (old_first, &old_key) {
                // An old row: kept unless deleted.
                let mut deleted = false;
                while let Some(d) = dels.key()? {
                    match cmp_keys(&d, ok) {
                        Ordering::Less => dels.advance()?,
                        Ordering::Equal => {
                            deleted = true;
                            dels.advance()?;
                            break;
                        }
                        Ordering::Greater => break,
                    }
                }
                if !deleted && let Some(l) = &old.line {
                    w.line(l)?;
                }
                old.advance()?;
            } else {
                // An upsert: it replaces the old row of the same key.
                if old_key.is_some() && old_key == up_key {
                    old.advance()?;
                }
                if let Some(l) = &ups.line {
                    w.line(l)?;
                }
                ups.advance()?;
            }
        }
        let got = w.finish()?;
        if got.rows != part.rows || got.sha256 != part.sha256 {
            return Err(BackupError::Mismatch(format!(
                "{} after applying the chain: {} rows (SHA-256 {}), the manifest has {} ({})",
                t.name, got.rows, got.sha256, part.rows, part.sha256
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A `messages` part with these (id, status) rows, in key order.
    fn state(dir: &Path, rows: &[(&str, &str)]) -> Part {
        let t = catalog::table("messages").unwrap();
        let mut w =
            LineWriter::create(dir, t.name, "tables/messages.jsonl".into(), columns(t)).unwrap();
        for (id, status) in rows {
            let row = json!([id, status, 2, "failover", "k", 1, 1, 1, 9, "{}"]);
            w.line(&serde_json::to_vec(&row).unwrap()).unwrap();
        }
        w.finish().unwrap()
    }

    /// A backup file name in `dir` with an index of the entries in `body`.
    fn indexed(dir: &Path, name: &str, body: &Path) -> PathBuf {
        let header = IndexHeader {
            format: INDEX_FORMAT.into(),
            backup: name.into(),
            sha256: String::new(),
            layout: 1,
            link: None,
        };
        let backup = dir.join(name);
        write_index(&backup, &header, body).unwrap();
        backup
    }

    fn manifest(tables: Vec<Part>, changes: Vec<Part>) -> Manifest {
        Manifest {
            format: "herald-backup".into(),
            layout: 1,
            herald_version: "t".into(),
            source: "sqlite".into(),
            source_schema: 1,
            created_at: String::new(),
            created_at_ms: 0,
            tables,
            link: None,
            changes,
        }
    }

    #[test]
    fn a_diff_holds_what_changed_and_applying_it_gives_the_new_state() {
        let dir = tempfile::tempdir().unwrap();
        let (s0, s1, out) = (
            dir.path().join("s0"),
            dir.path().join("s1"),
            dir.path().join("out"),
        );
        let p0 = state(&s0, &[("a", "queued"), ("b", "queued"), ("c", "queued")]);
        let idx0 = dir.path().join("idx0");
        let first = diff(&s0, std::slice::from_ref(&p0), None, &idx0).unwrap();
        assert_eq!(
            (first[0].rows, first[1].rows),
            (0, 0),
            "no parent: a full backup, only the index is written"
        );
        assert_eq!(std::fs::read_to_string(&idx0).unwrap().lines().count(), 3);
        let b0 = indexed(dir.path(), "herald-x.tar.zst", &idx0);
        // a changed, b unchanged, c deleted, d and aa new (aa sorts between a and b).
        let p1 = state(
            &s1,
            &[
                ("a", "sent"),
                ("aa", "queued"),
                ("b", "queued"),
                ("d", "queued"),
            ],
        );
        let idx1 = dir.path().join("idx1");
        let d = diff(
            &s1,
            std::slice::from_ref(&p1),
            Some(&index_path(&b0)),
            &idx1,
        )
        .unwrap();
        let (ups, dels) = (&d[0], &d[1]);
        assert_eq!(
            (ups.rows, dels.rows),
            (3, 1),
            "a, aa, d upserted; c deleted"
        );
        let deleted = std::fs::read_to_string(s1.join(&dels.file)).unwrap();
        assert_eq!(deleted, "[\"c\"]\n");
        apply(&s0, &s1, &manifest(vec![p1.clone()], d.clone()), &out).unwrap();
        assert_eq!(
            std::fs::read(out.join(&p1.file)).unwrap(),
            std::fs::read(s1.join(&p1.file)).unwrap()
        );
        // A change set that does not lead to the stated state is refused.
        let mut wrong = p1.clone();
        wrong.sha256 = "0".repeat(64);
        let e = apply(&s0, &s1, &manifest(vec![wrong], d), &dir.path().join("o2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("after applying the chain"), "{e}");
    }

    #[test]
    fn everything_deleted_and_a_table_new_in_the_child_both_apply() {
        let dir = tempfile::tempdir().unwrap();
        let (s0, s1) = (dir.path().join("s0"), dir.path().join("s1"));
        let p0 = state(&s0, &[("a", "queued"), ("b", "queued")]);
        let idx0 = dir.path().join("idx0");
        diff(&s0, std::slice::from_ref(&p0), None, &idx0).unwrap();
        let b0 = indexed(dir.path(), "herald-y.tar.zst", &idx0);
        let p1 = state(&s1, &[]);
        let d = diff(
            &s1,
            std::slice::from_ref(&p1),
            Some(&index_path(&b0)),
            &dir.path().join("i1"),
        )
        .unwrap();
        assert_eq!((d[0].rows, d[1].rows), (0, 2));
        let out = dir.path().join("out");
        apply(&s0, &s1, &manifest(vec![p1.clone()], d.clone()), &out).unwrap();
        assert_eq!(std::fs::read(out.join(&p1.file)).unwrap(), b"");
        // The parent had no such table: applying starts from nothing.
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let up = state(&dir.path().join("s2"), &[("z", "queued")]);
        let body = dir.path().join("empty-body");
        std::fs::write(&body, b"").unwrap();
        let none = indexed(dir.path(), "herald-z.tar.zst", &body);
        let d2 = diff(
            &dir.path().join("s2"),
            std::slice::from_ref(&up),
            Some(&index_path(&none)),
            &dir.path().join("i2"),
        )
        .unwrap();
        apply(
            &empty,
            &dir.path().join("s2"),
            &manifest(vec![up.clone()], d2),
            &dir.path().join("out2"),
        )
        .unwrap();
    }

    #[test]
    fn keys_order_like_the_dump() {
        let k = |v: Value| v.as_array().unwrap().clone();
        assert_eq!(cmp_keys(&k(json!([9])), &k(json!([10]))), Ordering::Less);
        assert_eq!(cmp_keys(&k(json!(["B"])), &k(json!(["a"]))), Ordering::Less);
        assert_eq!(
            cmp_keys(&k(json!(["a", 2])), &k(json!(["a", 10]))),
            Ordering::Less
        );
        assert_eq!(
            cmp_keys(&k(json!(["a", 2])), &k(json!(["a", 2]))),
            Ordering::Equal
        );
        assert_eq!(
            cmp_keys(&k(json!(["é"])), &k(json!(["z"]))),
            Ordering::Greater
        );
    }
}
