//! Loading: file → `${VAR}` interpolation → `HERALD_*` overrides → typed, strict decode.

use super::Config;
use std::path::{Path, PathBuf};
use toml::Value;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration is not valid TOML: {0}")]
    Syntax(String),
    #[error(
        "configuration key `{key}` uses ${{{var}}}, but the environment variable {var} is not set"
    )]
    MissingVar { var: String, key: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// Finds and loads the configuration: `path`, else `$HERALD_CONFIG`, else `./herald.toml` if
/// present, else built-in defaults. Returns the file used, if any.
pub fn load(path: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let env = |k: &str| std::env::var(k).ok();
    let chosen = match path {
        Some(p) => Some(p.to_path_buf()),
        None => match env("HERALD_CONFIG") {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => Some(PathBuf::from("herald.toml")).filter(|p| p.exists()),
        },
    };
    let text = match &chosen {
        Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
            path: p.clone(),
            source,
        })?,
        None => String::new(),
    };
    let cfg = load_from_str(&text, &env)?;
    cfg.validate()?;
    Ok((cfg, chosen))
}

/// Loads from TOML text with `env` as the environment (a function, so tests can pass their own).
pub fn load_from_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    // The parser's own message quotes the offending line, which may hold a secret: say the
    // line number and what is wrong only.
    let mut root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        ConfigError::Syntax(match line {
            Some(n) => format!("line {n}: {}", e.message()),
            None => e.message().to_string(),
        })
    })?;
    for (k, v) in root.iter_mut() {
        interpolate(v, k, env)?;
    }
    apply_env_overrides(&mut root, env)?;
    let de = Value::Table(root);
    let mut cfg = serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
        let key = e.path().to_string();
        let message = e.inner().to_string();
        ConfigError::Invalid {
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message,
        }
    })?;
    // `[limits] recipient` naming only some channels keeps the defaults of the others.
    cfg.limits = std::mem::take(&mut cfg.limits).with_default_recipient_limits();
    Ok(cfg)
}

/// Replaces `${VAR}` (and `${VAR:-fallback}`) in every string value; `$${` stays a literal
/// `${`.
fn interpolate(
    v: &mut Value,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match v {
        Value::String(s) if s.contains('$') => *s = interpolate_str(s, key, env)?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{key}[{i}]"), env)?;
            }
        }
        Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                interpolate(item, &format!("{key}.{k}"), env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn interpolate_str(
    s: &str,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| ConfigError::Invalid {
                key: key.into(),
                message: "`${` without a closing `}`".into(),
            })?;
            // `${VAR}` or `${VAR:-fallback}` (the fallback when VAR is unset or empty).
            let (var, fallback) = match tail[..end].split_once(":-") {
                Some((v, f)) => (v, Some(f)),
                None => (&tail[..end], None),
            };
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: format!("`${{{var}}}` is not a variable name"),
                });
            }
            let val = match (env(var).filter(|v| !v.is_empty()), fallback) {
                (Some(v), _) => v,
                (None, Some(f)) => f.to_string(),
                (None, None) => env(var).ok_or_else(|| ConfigError::MissingVar {
                    var: var.into(),
                    key: key.into(),
                })?,
            };
            out.push_str(&val);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Scalar sections that `HERALD_<SECTION>_<KEY>` may override, besides the short forms
/// `HERALD_LISTEN`, `HERALD_DATA_DIR` and `HERALD_DATABASE_URL` of SPEC §3.
const SECTIONS: &[&str] = &["server", "storage", "webhook", "dispatch", "log", "cluster"];

fn apply_env_overrides(
    root: &mut toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let defaults = match Value::try_from(Config::default()) {
        Ok(Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let mut set = |section: &str, key: &str, var: &str, raw: String| -> Result<(), ConfigError> {
        let template = defaults
            .get(section)
            .and_then(|s| s.get(key))
            .cloned()
            .unwrap_or(Value::String(String::new()));
        let value = match template {
            Value::Array(_) => Value::Array(
                raw.split(',')
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            ),
            Value::Integer(_) => {
                Value::Integer(raw.trim().parse().map_err(|_| ConfigError::Env {
                    var: var.into(),
                    message: format!("`{raw}` is not a whole number"),
                })?)
            }
            Value::Boolean(_) => {
                Value::Boolean(raw.trim().parse().map_err(|_| ConfigError::Env {
                    var: var.into(),
                    message: format!("`{raw}` is not true or false"),
                })?)
            }
            _ => Value::String(raw),
        };
        let table = root
            .entry(section.to_string())
            .or_insert_with(|| Value::Table(toml::Table::new()));
        match table {
            Value::Table(t) => {
                t.insert(key.to_string(), value);
                Ok(())
            }
            _ => Err(ConfigError::Invalid {
                key: section.into(),
                message: "must be a table".into(),
            }),
        }
    };
    for section in SECTIONS {
        let mut keys: Vec<String> = defaults
            .get(*section)
            .and_then(|s| s.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        match *section {
            "server" => keys.push("public_url".into()),
            "storage" => keys.push("url".into()),
            _ => {}
        }
        for key in keys {
            let var = format!("HERALD_{}_{}", section.to_uppercase(), key.to_uppercase());
            if let Some(raw) = env(&var) {
                set(section, &key, &var, raw)?;
            }
        }
    }
    for (var, section, key) in [
        ("HERALD_LISTEN", "server", "listen"),
        ("HERALD_DATA_DIR", "server", "data_dir"),
        ("HERALD_DATABASE_URL", "storage", "url"),
    ] {
        if let Some(raw) = env(var) {
            set(section, key, var, raw)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn sms_and_voice_have_recipient_limits_unless_configured() {
        use crate::core::types::Channel;
        let cfg = load_from_str("", &env_of(&[])).unwrap();
        assert_eq!(cfg.limits.recipient[&Channel::Sms].len(), 3);
        assert_eq!(cfg.limits.recipient[&Channel::Voice].len(), 3);
        let cfg = load_from_str(
            "[limits]\nrecipient = { email = [\"2/min\"], voice = [] }\n",
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(cfg.limits.recipient[&Channel::Sms].len(), 3, "kept");
        assert!(
            cfg.limits.recipient[&Channel::Voice].is_empty(),
            "turned off"
        );
        assert_eq!(cfg.limits.recipient[&Channel::Email].len(), 1);
    }

    #[test]
    fn syntax_errors_name_the_line_not_its_text() {
        let e = load_from_str(
            "[server]\nlisten = \"127.0.0.1:1\"\n[[api_keys]]\nkey = \"hunter2-secret-value\n",
            &env_of(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn a_fallback_stands_in_for_an_unset_or_empty_variable() {
        let text = "[server]\nlisten = \"${HOST:-127.0.0.1}:${PORT:-8081}\"\n";
        let cfg = load_from_str(text, &env_of(&[("PORT", "9000")])).unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:9000");
        let cfg = load_from_str(text, &env_of(&[("HOST", ""), ("PORT", "1")])).unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:1");
        // Without a fallback a missing variable is still an error naming it.
        let e = load_from_str("[server]\nlisten = \"${NOPE}\"\n", &env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("NOPE"), "{e}");
    }

    #[test]
    fn interpolates_variables_anywhere_in_a_value() {
        let cfg = load_from_str(
            "[server]\nlisten = \"${HOST}:${PORT}\"\ndata_dir = \"/d/$${literal}\"\n",
            &env_of(&[("HOST", "127.0.0.1"), ("PORT", "9000")]),
        )
        .unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:9000");
        assert_eq!(cfg.server.data_dir.to_str(), Some("/d/${literal}"));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = load_from_str(
            "[[api_keys]]\nname='a'\nkey='${NOPE}'\nrole='admin'",
            &env_of(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("NOPE") && err.contains("api_keys"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = load_from_str("[server]\nlisten_addr = 'x'\n", &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_addr"), "{err}");
        let err = load_from_str("[surver]\n", &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("surver"), "{err}");
        let err = load_from_str(
            "[[providers]]\nid='x'\nchannel='webhook'\nkind='webhook'\nsecrett='x'\n",
            &env_of(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("secrett"), "{err}");
    }

    #[test]
    fn bad_durations_name_their_key() {
        let err = load_from_str("[dispatch]\nlease = '30'\n", &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dispatch.lease") && err.contains("unit"),
            "{err}"
        );
    }

    #[test]
    fn env_overrides_win_over_the_file() {
        let cfg = load_from_str(
            "[server]\nlisten = '127.0.0.1:1'\n",
            &env_of(&[
                ("HERALD_LISTEN", "127.0.0.1:2"),
                ("HERALD_DATA_DIR", "/tmp/h"),
                ("HERALD_DATABASE_URL", "sqlite:///tmp/h/x.db"),
                ("HERALD_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1, *.example.com"),
                ("HERALD_DISPATCH_CONCURRENCY", "8"),
                ("HERALD_DISPATCH_LEASE", "45s"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:2");
        assert_eq!(cfg.server.data_dir.to_str(), Some("/tmp/h"));
        assert_eq!(cfg.storage.url.as_deref(), Some("sqlite:///tmp/h/x.db"));
        assert_eq!(
            cfg.webhook.allowed_hosts,
            vec!["127.0.0.1", "*.example.com"]
        );
        assert_eq!(cfg.dispatch.concurrency, 8);
        assert_eq!(cfg.dispatch.lease.0.as_secs(), 45);
        let err = load_from_str("", &env_of(&[("HERALD_DISPATCH_CONCURRENCY", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HERALD_DISPATCH_CONCURRENCY"), "{err}");
    }
}
