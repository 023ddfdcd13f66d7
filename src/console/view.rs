//! Rendering: the templates, the stylesheet and the script built into the binary, and the
//! headers every console answer carries.

use super::session::Session;
use crate::api::AppState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use serde_json::{Value, json};
use std::sync::OnceLock;

pub const CSS: &str = include_str!("assets/console.css");
pub const JS: &str = include_str!("assets/console.js");

/// The script's SHA-256, recorded in docs/console.md (a test keeps it true): a change to
/// the script is a deliberate one. Also its ETag.
pub const JS_SHA256: &str = "3674a2bb9c98aa95aaa22508a967287a5226ea8e660186b05ea037da70616763";

const TEMPLATES: [(&str, &str); 18] = [
    ("base.html", include_str!("assets/base.html")),
    ("signin.html", include_str!("assets/signin.html")),
    ("result.html", include_str!("assets/result.html")),
    ("overview.html", include_str!("assets/overview.html")),
    ("messages.html", include_str!("assets/messages.html")),
    ("message.html", include_str!("assets/message.html")),
    (
        "dead_letters.html",
        include_str!("assets/dead_letters.html"),
    ),
    ("providers.html", include_str!("assets/providers.html")),
    ("mode.html", include_str!("assets/mode.html")),
    ("approvals.html", include_str!("assets/approvals.html")),
    ("audit.html", include_str!("assets/audit.html")),
    ("nodes.html", include_str!("assets/nodes.html")),
    ("keys.html", include_str!("assets/keys.html")),
    ("contacts.html", include_str!("assets/contacts.html")),
    ("incidents.html", include_str!("assets/incidents.html")),
    ("backups.html", include_str!("assets/backups.html")),
    (
        "status_posts.html",
        include_str!("assets/status_posts.html"),
    ),
    ("macros.html", include_str!("assets/macros.html")),
];

/// The pages in the navigation: (id, label, path).
pub const NAV: [(&str, &str, &str); 14] = [
    ("overview", "Overview", "/console"),
    ("messages", "Messages", "/console/messages"),
    ("dead_letters", "Dead letters", "/console/dead-letters"),
    ("providers", "Providers", "/console/providers"),
    ("mode", "Mode", "/console/mode"),
    ("approvals", "Approvals", "/console/approvals"),
    ("audit", "Audit", "/console/audit"),
    ("nodes", "Nodes", "/console/nodes"),
    ("keys", "API keys", "/console/keys"),
    ("contacts", "Contacts", "/console/contacts"),
    ("incidents", "Incidents", "/console/incidents"),
    ("backups", "Backups", "/console/backups"),
    ("status", "Status page", "/console/status"),
    ("public", "Public status", "/status"),
];

pub fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        for (name, src) in TEMPLATES {
            // A template that does not parse fails the unit test that renders every page.
            let _ = e.add_template(name, src);
        }
        e.add_filter("pretty", |v: minijinja::Value| -> String {
            serde_json::to_value(&v)
                .ok()
                .and_then(|j| serde_json::to_string_pretty(&j).ok())
                .unwrap_or_default()
        });
        e.add_filter("when", |v: minijinja::Value| -> String {
            // RFC 3339 to "2026-12-02 17:05:35 UTC".
            let s = v.as_str().unwrap_or("");
            match s.get(..19) {
                Some(head) if s.len() >= 19 => format!("{} UTC", head.replace('T', " ")),
                _ if s.is_empty() => "—".into(),
                _ => s.to_string(),
            }
        });
        e
    })
}

/// Headers for every console answer: no caching, no framing, scripts and styles from this
/// origin only, nothing from another host.
pub fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// Renders a template with the common context (who is signed in, the CSRF token, the mode).
pub fn page(
    state: &AppState,
    s: Option<&Session>,
    template: &str,
    current: &str,
    title: &str,
    mut ctx: Value,
    status: StatusCode,
) -> Response {
    let nav: Vec<Value> = NAV
        .iter()
        .map(|(id, label, href)| json!({"id": id, "label": label, "href": href}))
        .collect();
    let mode = state
        .mode
        .read()
        .map(|m| m.mode.clone())
        .unwrap_or_default();
    if let Value::Object(m) = &mut ctx {
        m.insert("title".into(), json!(title));
        m.insert("current".into(), json!(current));
        m.insert("nav".into(), json!(nav));
        m.insert("mode".into(), json!(mode));
        if let Some(s) = s {
            m.insert(
                "me".into(),
                json!({"name": s.who.name, "role": s.who.role.to_string(), "approver": s.who.approver}),
            );
            m.insert("csrf".into(), json!(s.csrf));
        }
    }
    let html = env()
        .get_template(template)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))));
    match html {
        Ok(h) => secure(
            (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                h,
            )
                .into_response(),
        ),
        Err(e) => {
            tracing::error!(error = %e, template, "console page did not render");
            secure(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "This page could not be shown; the server log says why.\n",
                )
                    .into_response(),
            )
        }
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response();
    r = secure(r);
    r
}

pub async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

pub async fn js() -> Response {
    let mut r = asset(JS, "text/javascript; charset=utf-8");
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", &JS_SHA256[..16])) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_script_is_the_one_recorded() {
        assert_eq!(hex::encode(Sha256::digest(JS.as_bytes())), JS_SHA256);
        let doc = include_str!("../../docs/console.md");
        assert!(
            doc.contains(JS_SHA256),
            "docs/console.md records the script's sha256"
        );
    }

    #[test]
    fn times_read_as_utc_and_odd_text_is_kept_whole() {
        let when = |v: Value| {
            env()
                .render_str("{{ v | when }}", minijinja::context! { v => minijinja::Value::from(minijinja::value::Serde(&v)) })
                .unwrap()
        };
        assert_eq!(
            when(json!("2026-12-02T17:05:35.330Z")),
            "2026-12-02 17:05:35 UTC"
        );
        assert_eq!(when(json!("")), "—");
        assert_eq!(when(json!(null)), "—");
        assert_eq!(when(json!("soon")), "soon");
        // Byte 19 inside a character: kept as it is, no panic.
        assert_eq!(when(json!("2026-12-02T17:05:3é5")), "2026-12-02T17:05:3é5");
    }

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn pages_render_escaped_and_without_inline_script() {
        let ctx = json!({
            "title": "Providers", "current": "providers", "mode": "core_only",
            "nav": NAV.iter().map(|(id, l, h)| json!({"id": id, "label": l, "href": h})).collect::<Vec<_>>(),
            "me": {"name": "<alice>", "role": "admin", "approver": true}, "csrf": "tok",
            "data": [{"id": "p<1>", "kind": "aliyun", "channel": "sms", "priority": 1, "state": "down",
                      "circuit": "open", "success_rate": 0.5, "calls": 4, "failures": 2,
                      "latency_ms": {"p50": 10, "p99": null}}],
        });
        let html = env()
            .get_template("providers.html")
            .unwrap()
            .render(minijinja::Value::from(minijinja::value::Serde(&ctx)))
            .unwrap();
        assert!(html.contains("&lt;alice&gt;"), "{html}");
        assert!(html.contains("p&lt;1&gt;"));
        assert!(!html.contains("<script>"), "no inline script");
        assert!(html.contains("core_only"), "the mode banner");
        assert!(
            html.contains("name=\"csrf\" value=\"tok\""),
            "forms carry the token"
        );
        assert!(html.contains("aria-current=\"page\""));
    }
}
