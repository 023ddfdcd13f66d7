//! What Herald writes to disk holds codes and addresses: the data folder is 0700, the
//! database with its WAL, the lock, backups and their folder 0600/0700, whatever the umask.

use crate::utils::process::HeraldProcess;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn files_are_owner_only_under_an_open_umask() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let h = HeraldProcess::start_custom(
        &data,
        &["127.0.0.1"],
        "",
        "",
        "warn",
        &["sh", "-c", "umask 000; exec \"$@\"", "sh"],
    )
    .await;
    // One accept, so the WAL holds something.
    let r = crate::utils::http()
        .post(format!("{}/v1/messages", h.base))
        .bearer_auth(crate::utils::process::KEY)
        .json(&serde_json::json!({"to": {"user": "u-1"}, "content": {"text": "123456"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(mode(&data), 0o700, "data folder");
    for f in ["herald.db", "herald.db-wal", "herald.db-shm", "herald.lock"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    // A backup made under the same umask, beside the running gateway.
    let out = Command::new("sh")
        .args(["-c", "umask 000; exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_herald"))
        .args(["backup", "create", "--config"])
        .arg(data.join("herald.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let file = Path::new(&file);
    assert_eq!(mode(file), 0o600, "backup file");
    assert_eq!(mode(file.parent().unwrap()), 0o700, "backup folder");
    drop(h);
}
