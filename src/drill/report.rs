//! A drill's figures, its verdict against `[drill]` targets, and how it is written.

use crate::config::DrillConfig;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub scenario: String,
    pub started_at: String,
    pub duration_ms: u64,
    /// What the drill did, step by step, with times from its start.
    pub timeline: Vec<String>,
    /// Messages the gateway acknowledged (`202`) during the drill.
    pub accepted: u64,
    /// Sends the gateway refused or could not answer (not acknowledged, so not promised).
    pub refused: u64,
    pub delivered: u64,
    /// Acknowledged but never delivered (or, for `restore`, missing after the restore
    /// although acknowledged before the snapshot).
    pub lost: u64,
    /// Provider calls or webhooks beyond one per message.
    pub duplicates: u64,
    /// From the fault to Herald noticing it.
    pub detect_ms: Option<u64>,
    /// From the fault to full service (RTO).
    pub recover_ms: Option<u64>,
    /// Latency of deliveries (acknowledged → sent), p50 and p99, over the drill.
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    /// Scenario-specific figures.
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub checks: Vec<Check>,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub value: String,
    pub target: String,
    pub ok: bool,
}

pub fn json_path(p: &Path) -> PathBuf {
    if p.extension().is_some_and(|e| e == "json") {
        p.to_path_buf()
    } else {
        let mut s = p.as_os_str().to_owned();
        s.push(".json");
        PathBuf::from(s)
    }
}

pub fn md_path(p: &Path) -> PathBuf {
    json_path(p).with_extension("md")
}

fn ms(v: Option<u64>) -> String {
    v.map_or("—".into(), |v| format!("{v} ms"))
}

impl Report {
    /// Checks the figures against the targets.
    pub fn judge(&mut self, t: &DrillConfig) {
        let mut checks = Vec::new();
        let detect_max = t.max_detect.0.as_millis() as u64;
        if self.scenario != "restore" {
            checks.push(Check {
                name: "time to detect".into(),
                value: ms(self.detect_ms),
                target: format!("≤ {detect_max} ms"),
                ok: self.detect_ms.is_some_and(|d| d <= detect_max),
            });
        }
        let rto = t.max_recover.0.as_millis() as u64;
        checks.push(Check {
            name: "time to recover (RTO)".into(),
            value: ms(self.recover_ms),
            target: format!("≤ {rto} ms"),
            ok: self.recover_ms.is_some_and(|d| d <= rto),
        });
        checks.push(Check {
            name: "messages lost".into(),
            value: self.lost.to_string(),
            target: format!("≤ {}", t.max_lost),
            ok: self.lost <= t.max_lost,
        });
        checks.push(Check {
            name: "duplicates".into(),
            value: self.duplicates.to_string(),
            target: format!("≤ {}", t.max_duplicates),
            ok: self.duplicates <= t.max_duplicates,
        });
        checks.push(Check {
            name: "messages acknowledged".into(),
            value: self.accepted.to_string(),
            target: "> 0".into(),
            ok: self.accepted > 0,
        });
        self.passed = checks.iter().all(|c| c.ok);
        self.checks = checks;
    }

    pub fn summary_lines(&self) -> Vec<String> {
        let mut l = vec![format!(
            "drill {}: {} in {:.1} s",
            self.scenario,
            if self.passed { "PASSED" } else { "FAILED" },
            self.duration_ms as f64 / 1000.0
        )];
        if self.scenario == "page" {
            l.extend(self.extra.iter().map(|(k, v)| format!("  {k}: {v}")));
            l.extend(self.checks.iter().map(|c| {
                let mark = if c.ok { "ok" } else { "MISSED" };
                format!("  [{mark}] {}: {} (target {})", c.name, c.value, c.target)
            }));
            return l;
        }
        l.push(format!(
            "  accepted {}  delivered {}  lost {}  duplicates {}  refused {}",
            self.accepted, self.delivered, self.lost, self.duplicates, self.refused
        ));
        l.push(format!(
            "  time to detect {}  time to recover {}  latency p50 {} p99 {}",
            ms(self.detect_ms),
            ms(self.recover_ms),
            ms(self.latency_p50_ms),
            ms(self.latency_p99_ms)
        ));
        for (k, v) in &self.extra {
            l.push(format!("  {k}: {v}"));
        }
        for c in &self.checks {
            l.push(format!(
                "  [{}] {}: {} (target {})",
                if c.ok { "ok" } else { "MISSED" },
                c.name,
                c.value,
                c.target
            ));
        }
        l
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# Drill `{}` — {}\n\nStarted {}; took {:.1} s.\n\n## Figures\n\n| figure | value |\n|---|---|\n",
            self.scenario,
            if self.passed { "passed" } else { "FAILED" },
            self.started_at,
            self.duration_ms as f64 / 1000.0
        );
        for (k, v) in [
            ("messages acknowledged", self.accepted.to_string()),
            ("sends refused (not acknowledged)", self.refused.to_string()),
            ("delivered", self.delivered.to_string()),
            ("lost", self.lost.to_string()),
            ("duplicates", self.duplicates.to_string()),
            ("time to detect", ms(self.detect_ms)),
            ("time to recover (RTO)", ms(self.recover_ms)),
            ("latency p50", ms(self.latency_p50_ms)),
            ("latency p99", ms(self.latency_p99_ms)),
        ] {
            s.push_str(&format!("| {k} | {v} |\n"));
        }
        for (k, v) in &self.extra {
            s.push_str(&format!("| {k} | {v} |\n"));
        }
        s.push_str("\n## Targets\n\n| check | value | target | result |\n|---|---|---|---|\n");
        for c in &self.checks {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                c.name,
                c.value,
                c.target,
                if c.ok { "ok" } else { "**missed**" }
            ));
        }
        s.push_str("\n## Timeline\n\n");
        for t in &self.timeline {
            s.push_str(&format!("- {t}\n"));
        }
        s
    }

    /// Writes the JSON and Markdown reports, creating their folder; an error names the file.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let named = |p: &Path, e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("cannot write {}: {e}", p.display()))
        };
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let (j, m) = (json_path(path), md_path(path));
        if let Some(dir) = j.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| named(dir, e))?;
        }
        std::fs::write(&j, json + "\n").map_err(|e| named(&j, e))?;
        std::fs::write(&m, self.markdown()).map_err(|e| named(&m, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_go_into_a_folder_made_for_them_and_errors_name_the_file() {
        let t = tempfile::tempdir().unwrap();
        let r = Report::default();
        r.write(&t.path().join("drills/new/x.json")).unwrap();
        assert!(t.path().join("drills/new/x.json").exists());
        assert!(t.path().join("drills/new/x.md").exists());
        // A folder where the file should be: the error says which file.
        std::fs::create_dir_all(t.path().join("taken.json")).unwrap();
        let e = r.write(&t.path().join("taken.json")).unwrap_err();
        assert!(e.to_string().contains("taken.json"), "{e}");
    }

    #[test]
    fn a_missed_target_fails_the_drill() {
        let mut r = Report {
            scenario: "node-kill".into(),
            accepted: 100,
            delivered: 100,
            detect_ms: Some(4_000),
            recover_ms: Some(6_000),
            ..Default::default()
        };
        r.judge(&DrillConfig::default());
        assert!(r.passed, "{:?}", r.checks);
        r.lost = 1;
        r.judge(&DrillConfig::default());
        assert!(!r.passed);
        r.lost = 0;
        r.recover_ms = None; // never recovered
        r.judge(&DrillConfig::default());
        assert!(!r.passed);
        assert!(r.markdown().contains("**missed**"));
    }

    #[test]
    fn the_report_goes_to_json_and_markdown() {
        assert_eq!(json_path(Path::new("r")), PathBuf::from("r.json"));
        assert_eq!(md_path(Path::new("r")), PathBuf::from("r.md"));
        assert_eq!(json_path(Path::new("a/r.json")), PathBuf::from("a/r.json"));
        assert_eq!(md_path(Path::new("a/r.json")), PathBuf::from("a/r.md"));
    }
}
