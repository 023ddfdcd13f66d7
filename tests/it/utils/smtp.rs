//! A real SMTP server for tests: aiosmtpd (tests/smtp_sink.py), plain or STARTTLS with AUTH.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub out: PathBuf,
    _dir: tempfile::TempDir,
    pub cert: Option<PathBuf>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_smtp(tls_auth: bool) -> SmtpServer {
    let dir = tempfile::tempdir().unwrap();
    let port = super::process::free_port();
    let out = dir.path().join("mail");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
    let mut cmd = Command::new(super::python());
    cmd.arg(script)
        .args(["--port", &port.to_string(), "--out"])
        .arg(&out);
    let mut cert_path = None;
    if tls_auth {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        cmd.arg("--cert").arg(&cert).arg("--key").arg(&key).args([
            "--user",
            "gw",
            "--password",
            "smtp-password-value",
        ]);
        cert_path = Some(cert);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start the SMTP test server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the SMTP test server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    SmtpServer {
        child,
        port,
        out,
        _dir: dir,
        cert: cert_path,
    }
}

pub fn mails(out: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}
