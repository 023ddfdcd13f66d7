//! Label matchers in Alertmanager's syntax (`team="db"`, `severity=~"critical|page"`,
//! `env!="dev"`, `job!~"test.*"`): regexes match the whole value, as in Alertmanager.
//! Pure.

use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub enum Op {
    Eq(String),
    Ne(String),
    Re(regex::Regex),
    NotRe(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
}

fn anchored(re: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("bad regex `{re}`: {e}"))
}

/// Unquotes a matcher value: `"…"` with `\"`, `\\` and `\n` escapes, or a bare word.
fn value(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let Some(inner) = raw.strip_prefix('"') else {
        if raw.contains(['"', ' ', ',', '{', '}']) {
            return Err(format!("value `{raw}` must be quoted"));
        }
        return Ok(raw.to_string());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| format!("value `{raw}` has no closing quote"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some(e @ ('"' | '\\')) => out.push(e),
                Some(e) => {
                    out.push('\\');
                    out.push(e);
                }
                None => return Err(format!("value `{raw}` ends in a backslash")),
            },
            '"' => return Err(format!("value `{raw}` has an unescaped quote")),
            c => out.push(c),
        }
    }
    Ok(out)
}

impl Matcher {
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let s = s.trim();
        let at = s
            .find(['=', '!'])
            .ok_or_else(|| format!("`{s}` is not a matcher (name=\"value\", !=, =~ or !~)"))?;
        let name = s[..at].trim();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if !valid_name {
            return Err(format!("`{name}` is not a label name"));
        }
        let rest = &s[at..];
        let (op, v) = if let Some(v) = rest.strip_prefix("=~") {
            ("=~", v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            ("!~", v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            ("!=", v)
        } else if let Some(v) = rest.strip_prefix('=') {
            ("=", v)
        } else {
            return Err(format!("`{s}`: the operator must be =, !=, =~ or !~"));
        };
        let v = value(v)?;
        let op = match op {
            "=" => Op::Eq(v),
            "!=" => Op::Ne(v),
            "=~" => Op::Re(anchored(&v)?),
            _ => Op::NotRe(anchored(&v)?),
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
        })
    }

    /// Whether `labels` match (a missing label is the empty value, as in Alertmanager).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match &self.op {
            Op::Eq(x) => v == x,
            Op::Ne(x) => v != x,
            Op::Re(r) => r.is_match(v),
            Op::NotRe(r) => !r.is_match(v),
        }
    }
}

/// Whether every matcher matches.
pub fn all_match(ms: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    ms.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matchers_work_as_in_alertmanager() {
        let l = labels(&[
            ("team", "db"),
            ("severity", "critical"),
            ("job", "test-api"),
        ]);
        for (m, want) in [
            ("team=\"db\"", true),
            ("team=db", true),
            ("team = \"db\"", true),
            ("team!=\"db\"", false),
            ("severity=~\"critical|page\"", true),
            ("severity=~\"crit\"", false),
            ("job!~\"test.*\"", false),
            ("job!~\"prod.*\"", true),
            ("missing=\"\"", true),
            ("missing!=\"\"", false),
            ("missing=~\".*\"", true),
        ] {
            assert_eq!(Matcher::parse(m).unwrap().matches(&l), want, "{m}");
        }
        let q = Matcher::parse(r#"msg="say \"hi\"\\""#).unwrap();
        assert!(q.matches(&labels(&[("msg", "say \"hi\"\\")])));
    }

    #[test]
    fn bad_matchers_are_refused_by_name() {
        for bad in [
            "team",
            "=db",
            "9x=\"a\"",
            "team=\"db",
            "team=~\"(\"",
            "team==\"x\"",
            "a=\"b\"c\"",
        ] {
            assert!(Matcher::parse(bad).is_err(), "{bad}");
        }
    }
}
