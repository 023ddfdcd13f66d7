//! Files and folders that hold message content (codes, addresses) or keys: created owner-only
//! (folders 0700, files 0600) whatever the umask, and tightened when found looser.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) and makes `dir` itself 0700.
pub fn dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    tighten(dir, 0o700)
}

/// Sets `path`'s mode to `mode` when it grants more (for files made by older versions).
pub fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.permissions().mode() & 0o777 & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Options for an owner-only file (0600 when created); add the access flags.
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(0o600);
    o
}

/// Creates (or truncates) an owner-only file for writing.
pub fn create(path: &Path) -> io::Result<File> {
    let f = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    tighten(path, 0o600)?;
    Ok(f)
}

/// Makes sure a SQLite database file exists owner-only before SQLite opens it: SQLite gives
/// its `-wal` and `-shm` files the database file's mode. Tightens those that already exist.
pub fn sqlite_files(db: &Path) -> io::Result<()> {
    options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(db)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let p = std::path::PathBuf::from(name);
        if p.exists() {
            tighten(&p, 0o600)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn folders_and_files_are_owner_only_and_looser_ones_are_tightened() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        let f = d.join("x");
        std::fs::write(&f, b"1").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        create(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        let db = d.join("h.db");
        std::fs::write(d.join("h.db-wal"), b"").unwrap();
        std::fs::set_permissions(d.join("h.db-wal"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        sqlite_files(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&d.join("h.db-wal")), 0o600);
    }
}
