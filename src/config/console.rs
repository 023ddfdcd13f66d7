//! `[approvals]` (two-person approval of critical switches), `[console]` (the operator
//! console's sessions) and `[status]` (the public status page).

use super::Dur;
use serde::{Deserialize, Serialize};

/// The actions `[approvals] actions` may list.
pub const CRITICAL_ACTIONS: [&str; 3] =
    ["mode.set", "provider.disable_last", "dead_letters.replay"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// Critical actions that wait for a second person: `mode.set` (any mode switch),
    /// `provider.disable_last` (disabling the last healthy provider of a channel),
    /// `dead_letters.replay` (replaying more than `replay_over` dead letters). Empty: off.
    pub actions: Vec<String>,
    /// A replay of more than this many dead letters is critical.
    pub replay_over: u64,
    /// A request not approved within this is void.
    pub expires: Dur,
    /// Whether one person may act alone on a critical action (typing the confirmation);
    /// such an act is flagged for review by another approver.
    pub break_glass: bool,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            actions: Vec::new(),
            replay_over: 100,
            expires: Dur::secs(3600),
            break_glass: true,
        }
    }
}

impl ApprovalsConfig {
    pub fn requires(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }

    pub(super) fn check(&self) -> Result<(), (String, String)> {
        for (i, a) in self.actions.iter().enumerate() {
            if !CRITICAL_ACTIONS.contains(&a.as_str()) {
                return Err((
                    format!("approvals.actions[{i}]"),
                    format!(
                        "unknown action `{a}`: one of {}",
                        CRITICAL_ACTIONS.join(", ")
                    ),
                ));
            }
        }
        if self.expires.0.as_secs() < 60 || self.expires.0.as_secs() > 7 * 24 * 3600 {
            return Err((
                "approvals.expires".into(),
                "must be between 1m and 7d".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the operator console at `/console`.
    pub enabled: bool,
    /// How long a sign-in lasts.
    pub session_ttl: Dur,
    /// Whether the session cookie is marked `Secure` (sent over HTTPS only). Browsers treat
    /// `http://localhost` as secure, so this stays on unless the console is reached over
    /// plain HTTP on another name.
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            session_ttl: Dur::secs(8 * 3600),
            secure_cookie: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Serve the public status page at `/status`.
    pub enabled: bool,
    /// The page's name (its title and the feed's).
    pub name: String,
    /// How often the snapshot the page serves is rebuilt.
    pub refresh: Dur,
    /// Where the last snapshot is kept, to serve after a restart while storage is down
    /// (default `<data_dir>/status-snapshot.json`).
    pub snapshot_file: Option<std::path::PathBuf>,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            enabled: true,
            name: "Herald".into(),
            refresh: Dur::secs(5),
            snapshot_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_actions_and_odd_expiries_are_refused_by_name() {
        let mut a = ApprovalsConfig {
            actions: vec!["mode.set".into(), "drop.tables".into()],
            ..Default::default()
        };
        assert_eq!(
            a.check().map_err(|e| e.0),
            Err("approvals.actions[1]".to_string())
        );
        a.actions.pop();
        assert!(a.check().is_ok());
        a.expires = Dur::secs(5);
        assert_eq!(
            a.check().map_err(|e| e.0),
            Err("approvals.expires".to_string())
        );
    }

    #[test]
    fn requires_names_exact_actions() {
        let a = ApprovalsConfig {
            actions: vec!["mode.set".into()],
            ..Default::default()
        };
        assert!(a.requires("mode.set"));
        assert!(!a.requires("dead_letters.replay"));
    }
}
