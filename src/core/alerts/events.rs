//! PagerDuty Events API v2 (`POST /v2/enqueue`), as Herald takes it at
//! `/v1/alerts/events`: trigger, acknowledge and resolve by `dedup_key`. Errors are in
//! PagerDuty's shape (`{"status":"invalid event","message":…,"errors":[…]}`). Pure.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Trigger,
    Acknowledge,
    Resolve,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub routing_key: String,
    pub action: Action,
    /// Given, or (for a trigger without one) made by the caller.
    pub dedup_key: Option<String>,
    pub summary: String,
    pub source: String,
    pub severity: String,
    pub component: Option<String>,
    pub group: Option<String>,
    pub class: Option<String>,
    pub custom_details: Value,
    pub links: Vec<(String, String)>,
    pub client_url: Option<String>,
}

fn text(v: &Value, name: &str, max: usize, errs: &mut Vec<String>) -> Option<String> {
    match v.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= max => Some(s.clone()),
        Some(Value::String(_)) => {
            errs.push(format!("'{name}' is longer than {max} characters"));
            None
        }
        Some(_) => {
            errs.push(format!("'{name}' must be a string"));
            None
        }
    }
}

/// Reads an event; `Err` holds PagerDuty-style messages, one per problem.
pub fn parse(body: &Value) -> Result<Event, Vec<String>> {
    let mut errs = Vec::new();
    if !body.is_object() {
        return Err(vec!["the event must be a JSON object".into()]);
    }
    let routing_key = text(body, "routing_key", 128, &mut errs).unwrap_or_default();
    if routing_key.is_empty() {
        errs.push("'routing_key' is missing or blank".into());
    }
    let action = match body.get("event_action").and_then(Value::as_str) {
        Some("trigger") => Some(Action::Trigger),
        Some("acknowledge") => Some(Action::Acknowledge),
        Some("resolve") => Some(Action::Resolve),
        _ => {
            errs.push("'event_action' must be one of trigger, acknowledge, resolve".into());
            None
        }
    };
    let dedup_key = text(body, "dedup_key", 255, &mut errs).filter(|d| !d.is_empty());
    let payload = body.get("payload").cloned().unwrap_or(Value::Null);
    let (mut summary, mut source, mut severity) = (String::new(), String::new(), String::new());
    let (mut component, mut group, mut class) = (None, None, None);
    let mut custom_details = Value::Null;
    if action == Some(Action::Trigger) {
        if !payload.is_object() {
            errs.push("'payload' is missing or not an object".into());
        } else {
            summary = text(&payload, "summary", 1024, &mut errs).unwrap_or_default();
            if summary.trim().is_empty() {
                errs.push("'payload.summary' is missing or blank".into());
            }
            source = text(&payload, "source", 255, &mut errs).unwrap_or_default();
            if source.trim().is_empty() {
                errs.push("'payload.source' is missing or blank".into());
            }
            severity = text(&payload, "severity", 16, &mut errs).unwrap_or_default();
            if !matches!(severity.as_str(), "critical" | "error" | "warning" | "info") {
                errs.push(
                    "'payload.severity' must be one of critical, error, warning, info".into(),
                );
            }
            component = text(&payload, "component", 255, &mut errs);
            group = text(&payload, "group", 255, &mut errs);
            class = text(&payload, "class", 255, &mut errs);
            custom_details = payload
                .get("custom_details")
                .cloned()
                .unwrap_or(Value::Null);
        }
    } else if action.is_some() && dedup_key.is_none() {
        errs.push("'dedup_key' is required to acknowledge or resolve".into());
    }
    let mut links = Vec::new();
    if let Some(ls) = body.get("links") {
        match ls.as_array() {
            Some(a) => {
                for l in a.iter().take(20) {
                    if let Some(href) = l.get("href").and_then(Value::as_str)
                        && (href.starts_with("https://") || href.starts_with("http://"))
                    {
                        let t = l.get("text").and_then(Value::as_str).unwrap_or(href);
                        links.push((
                            href.chars().take(2048).collect(),
                            t.chars().take(200).collect(),
                        ));
                    }
                }
            }
            None => errs.push("'links' must be an array".into()),
        }
    }
    let client_url = text(body, "client_url", 2048, &mut errs);
    match (errs.is_empty(), action) {
        (true, Some(action)) => Ok(Event {
            routing_key,
            action,
            dedup_key,
            summary,
            source,
            severity,
            component,
            group,
            class,
            custom_details,
            links,
            client_url,
        }),
        _ => Err(errs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_read_as_pagerduty_reads_them() {
        let e = parse(&json!({"routing_key": "r1", "event_action": "trigger",
            "payload": {"summary": "db down", "source": "db01", "severity": "critical",
                        "custom_details": {"disk": "full"}},
            "links": [{"href": "https://runbook.example/db", "text": "runbook"}, {"href": "javascript:x"}]}))
        .unwrap();
        assert_eq!(
            (e.action, e.summary.as_str(), e.severity.as_str()),
            (Action::Trigger, "db down", "critical")
        );
        assert_eq!(e.dedup_key, None, "made by the caller");
        assert_eq!(e.links.len(), 1, "only http(s) links");
        let r = parse(&json!({"routing_key": "r1", "event_action": "resolve", "dedup_key": "k"}))
            .unwrap();
        assert_eq!(
            (r.action, r.dedup_key.as_deref()),
            (Action::Resolve, Some("k"))
        );
    }

    #[test]
    fn bad_events_say_what_is_wrong() {
        let errs =
            parse(&json!({"event_action": "trigger", "payload": {"severity": "bad"}})).unwrap_err();
        assert!(errs.iter().any(|e| e.contains("routing_key")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("payload.summary")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("payload.source")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("payload.severity")),
            "{errs:?}"
        );
        let errs = parse(&json!({"routing_key": "r", "event_action": "acknowledge"})).unwrap_err();
        assert!(errs[0].contains("dedup_key"), "{errs:?}");
        assert!(parse(&json!({"routing_key": "r", "event_action": "explode"})).is_err());
        assert!(parse(&json!([1])).is_err());
        assert!(parse(&json!({"routing_key": 5, "event_action": "trigger"})).is_err());
    }
}
