//! The snapshot rendered: the HTML page (no script), Statuspage v2 JSON, an Atom feed of
//! incident updates and SVG badges.

use super::Snapshot;
use super::state::State;
use crate::core::types::rfc3339;
use minijinja::{Environment, Value as J, context};
use serde_json::{Value, json};
use std::sync::OnceLock;

pub const CSS: &str = include_str!("assets/style.css");

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        // Templates are compiled into the binary; a broken one fails the unit tests.
        let _ = e.add_template("page.html", include_str!("assets/page.html"));
        let _ = e.add_template("incident.html", include_str!("assets/incident.html"));
        e.add_function("day_text", |d: J| -> String {
            let state = d
                .get_attr("state")
                .ok()
                .and_then(|s| s.as_str().and_then(State::parse));
            match state {
                None => "no data".to_string(),
                Some(s) => {
                    let down = d
                        .get_attr("down_minutes")
                        .ok()
                        .and_then(|v| i64::try_from(v).ok())
                        .unwrap_or(0);
                    if down > 0 {
                        format!("{}, {down} min down", s.label())
                    } else {
                        s.label().to_string()
                    }
                }
            }
        });
        e
    })
}

fn human(ms: i64) -> String {
    rfc3339(ms)
        .get(..16)
        .map(|s| format!("{} UTC", s.replace('T', " ")))
        .unwrap_or_default()
}

fn age(ms: i64) -> String {
    let secs = (ms / 1000).max(0);
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

/// The status page.
pub fn html(s: &Snapshot, now: i64) -> Result<String, minijinja::Error> {
    let labels: std::collections::BTreeMap<&str, &str> = State::ALL
        .iter()
        .map(|st| (st.as_str(), st.label()))
        .collect();
    let icons: std::collections::BTreeMap<&str, &str> = State::ALL
        .iter()
        .map(|st| (st.as_str(), st.icon()))
        .collect();
    let (active, past): (Vec<&Value>, Vec<&Value>) = s
        .incidents
        .iter()
        .partition(|i| !i["resolved_at"].is_string());
    let banner_icon = match s.indicator.as_str() {
        "none" => State::Operational.icon(),
        "maintenance" => State::UnderMaintenance.icon(),
        "minor" => State::DegradedPerformance.icon(),
        _ => State::MajorOutage.icon(),
    };
    env().get_template("page.html")?.render(context! {
        s => J::from(minijinja::value::Serde(s)),
        labels => labels,
        icons => icons,
        active => J::from(minijinja::value::Serde(&active)),
        past => J::from(minijinja::value::Serde(&past)),
        banner_icon => banner_icon,
        built_iso => rfc3339(s.built_at),
        built_text => human(s.built_at),
        stored_iso => rfc3339(s.stored_at),
        stored_text => human(s.stored_at),
        age => age(now - s.stored_at),
    })
}

fn page(s: &Snapshot, base: &str) -> Value {
    json!({
        "id": "herald",
        "name": s.name,
        "url": format!("{base}/status"),
        "time_zone": "Etc/UTC",
        "updated_at": rfc3339(s.built_at),
    })
}

pub fn status_json(s: &Snapshot, base: &str) -> Value {
    json!({
        "page": page(s, base),
        "status": { "indicator": s.indicator, "description": s.description },
    })
}

fn components(s: &Snapshot) -> Vec<Value> {
    s.components
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "name": c.name,
                "status": c.status,
                "created_at": rfc3339(0),
                "updated_at": rfc3339(s.built_at),
                "position": c.position,
                "description": null,
                "showcase": true,
                "start_date": null,
                "group_id": null,
                "page_id": "herald",
                "group": false,
                "only_show_if_degraded": false,
            })
        })
        .collect()
}

pub fn components_json(s: &Snapshot, base: &str) -> Value {
    json!({ "page": page(s, base), "components": components(s) })
}

fn incident(i: &Value, base: &str) -> Value {
    let id = i["id"].as_str().unwrap_or("");
    let affected: Vec<Value> = i["components"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({ "code": c["id"], "name": c["id"], "old_status": "operational", "new_status": c["status"] }))
        .collect();
    let updates: Vec<Value> = i["updates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            json!({
                "id": u["id"],
                "status": u["status"],
                "body": u["body"],
                "incident_id": id,
                "created_at": u["created_at"],
                "updated_at": u["created_at"],
                "display_at": u["created_at"],
                "affected_components": affected,
            })
        })
        .collect();
    json!({
        "id": id,
        "name": i["title"],
        "status": i["status"],
        "impact": i["impact"],
        "created_at": i["created_at"],
        "updated_at": i["updated_at"],
        "started_at": i["created_at"],
        "monitoring_at": null,
        "resolved_at": i["resolved_at"],
        "shortlink": format!("{base}/status#i-{id}"),
        "page_id": "herald",
        "incident_updates": updates,
        "components": i["components"],
    })
}

pub fn incidents_json(s: &Snapshot, base: &str, unresolved_only: bool) -> Value {
    let list: Vec<Value> = s
        .incidents
        .iter()
        .filter(|i| !unresolved_only || !i["resolved_at"].is_string())
        .map(|i| incident(i, base))
        .collect();
    json!({ "page": page(s, base), "incidents": list })
}

pub fn summary_json(s: &Snapshot, base: &str) -> Value {
    let mut v = status_json(s, base);
    v["components"] = json!(components(s));
    v["incidents"] = incidents_json(s, base, true)["incidents"].clone();
    v["scheduled_maintenances"] = json!([]);
    v
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One entry per incident update, newest first.
pub fn atom(s: &Snapshot, base: &str) -> String {
    let mut entries: Vec<(String, String)> = Vec::new();
    for i in &s.incidents {
        let title = i["title"].as_str().unwrap_or("");
        let iid = i["id"].as_str().unwrap_or("");
        for u in i["updates"].as_array().into_iter().flatten() {
            let at = u["created_at"].as_str().unwrap_or("").to_string();
            entries.push((
                at.clone(),
                format!(
                    "<entry><id>tag:herald,status:{iid}:{}</id><title>{} — {}</title><updated>{at}</updated><link href=\"{}\"/><content type=\"text\">{}</content></entry>",
                    xml(u["id"].as_str().unwrap_or("")),
                    xml(title),
                    xml(u["status"].as_str().unwrap_or("")),
                    xml(&format!("{base}/status#i-{iid}")),
                    xml(u["body"].as_str().unwrap_or("")),
                ),
            ));
        }
    }
    entries.sort_by(|a, b| b.0.cmp(&a.0));
    let updated = entries
        .first()
        .map(|e| e.0.clone())
        .unwrap_or_else(|| rfc3339(s.built_at));
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\"><id>{}</id><title>{} status history</title><updated>{updated}</updated><link rel=\"self\" href=\"{}\"/>{}</feed>\n",
        xml(&format!("{base}/status")),
        xml(&s.name),
        xml(&format!("{base}/status/history.atom")),
        entries.into_iter().map(|e| e.1).collect::<String>()
    )
}

/// A shields-style badge: `all` is the page's indicator, else a component's state; an
/// unknown component is a grey "unknown".
pub fn badge(s: Option<&Snapshot>, component: &str) -> String {
    let (label, state) = match s {
        // The whole page: its worst component.
        Some(s) if component == "all" => (
            s.name.clone(),
            s.components
                .iter()
                .filter_map(|c| State::parse(&c.status))
                .max()
                .or(Some(State::Operational)),
        ),
        Some(s) => match s.components.iter().find(|c| c.id == component) {
            Some(c) => (c.name.clone(), State::parse(&c.status)),
            None => (component.chars().take(40).collect(), None),
        },
        None => ("status".into(), None),
    };
    let (text, colour) = match state {
        Some(State::Operational) => ("operational", "#1a7f37"),
        Some(State::UnderMaintenance) => ("maintenance", "#2155b8"),
        Some(State::DegradedPerformance) => ("degraded", "#8a6100"),
        Some(State::PartialOutage) => ("partial outage", "#b35900"),
        Some(State::MajorOutage) => ("major outage", "#c11b1b"),
        None => ("unknown", "#57606a"),
    };
    let lw = 10 + 7 * label.chars().count();
    let rw = 10 + 7 * text.len();
    let label = xml(&label);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"20\" role=\"img\" aria-label=\"{label}: {text}\"><title>{label}: {text}</title><rect width=\"{lw}\" height=\"20\" fill=\"#555\"/><rect x=\"{lw}\" width=\"{rw}\" height=\"20\" fill=\"{colour}\"/><g fill=\"#fff\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\"><text x=\"5\" y=\"14\">{label}</text><text x=\"{tx}\" y=\"14\">{text}</text></g></svg>",
        w = lw + rw,
        tx = lw + 5,
    )
}

#[cfg(test)]
mod tests {
    use super::super::{Component, Day};
    use super::*;

    fn snap(live: bool) -> Snapshot {
        Snapshot {
            name: "Acme <Herald>".into(),
            built_at: 1_700_000_000_000,
            stored_at: 1_699_999_000_000,
            live,
            indicator: "minor".into(),
            description: "Minor Service Outage".into(),
            components: vec![Component {
                id: "sms".into(),
                name: "SMS".into(),
                status: "degraded_performance".into(),
                position: 1,
                uptime: Some(99.5),
                days: vec![Day {
                    day: "2023-11-14".into(),
                    state: Some("partial_outage".into()),
                    uptime: Some(99.0),
                    down_minutes: 14,
                    degraded_minutes: 0,
                }],
            }],
            incidents: vec![json!({
                "id": "st_1", "title": "SMS <slow>", "impact": "minor", "status": "investigating",
                "components": [{"id": "sms", "status": "degraded_performance"}],
                "created_at": "2023-11-14T22:00:00.000Z", "updated_at": "2023-11-14T22:00:00.000Z",
                "resolved_at": null,
                "updates": [{"id": "su_1", "status": "investigating", "body": "Looking & seeing", "created_at": "2023-11-14T22:00:00.000Z"}]
            })],
        }
    }

    #[test]
    fn the_page_renders_escaped_with_states_in_words() {
        let h = html(&snap(true), 1_700_000_000_000).unwrap();
        assert!(h.contains("Acme &lt;Herald&gt; status"), "escaped name");
        assert!(!h.contains("<slow>"), "escaped incident title");
        assert!(h.contains("Degraded performance"));
        assert!(h.contains("2023-11-14: Partial outage, 14 min down"));
        assert!(h.contains("99.50 % uptime"));
        assert!(h.contains("Active incidents"));
        assert!(!h.contains("<script"), "no script on the page");
        assert!(!h.contains("temporarily unavailable"));
    }

    #[test]
    fn a_stale_snapshot_says_its_age() {
        let h = html(&snap(false), 1_700_000_000_000).unwrap();
        assert!(h.contains("temporarily unavailable"), "{h}");
        assert!(h.contains("16 min ago"), "{h}");
    }

    #[test]
    fn statuspage_json_has_the_fields_tools_read() {
        let s = summary_json(&snap(true), "http://h");
        assert_eq!(s["status"]["indicator"], "minor");
        assert_eq!(s["components"][0]["status"], "degraded_performance");
        assert_eq!(
            s["incidents"][0]["incident_updates"][0]["body"],
            "Looking & seeing"
        );
        assert_eq!(s["page"]["url"], "http://h/status");
        assert!(s["scheduled_maintenances"].is_array());
    }

    #[test]
    fn the_feed_and_badges_are_escaped_xml() {
        let a = atom(&snap(true), "http://h");
        assert!(a.contains("Looking &amp; seeing") && a.contains("SMS &lt;slow&gt;"));
        let b = badge(Some(&snap(true)), "sms");
        assert!(b.contains("aria-label=\"SMS: degraded\"") && b.contains("<title>"));
        assert!(badge(Some(&snap(true)), "nope<").contains("nope&lt;: unknown"));
        assert!(badge(None, "all").contains("unknown"));
        assert!(badge(Some(&snap(true)), "all").contains("degraded"));
    }
}
