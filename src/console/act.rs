//! The console's buttons. Each form names an action; [`plan`] turns its fields into the
//! API request an API client would send (and the equivalent CLI line), which then goes
//! through the same router as any other client's, signed in as the session's key. The
//! answer is shown as it came: done, waiting for a second person (`202`), a preview, or
//! refused with the API's words and status.

use super::client::{self, seg};
use super::session::{Session, field, fields};
use super::view;
use crate::api::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

/// One button's request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
    /// The same with the CLI, when it has the command.
    pub cli: Option<String>,
    /// Where to go back to.
    pub back: &'static str,
}

/// Quotes for a POSIX shell.
pub fn sh(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn get<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    field(f, name).map(str::trim).filter(|v| !v.is_empty())
}

fn need<'a>(f: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    get(f, name).ok_or_else(|| format!("{name}: this field is required"))
}

fn checked(f: &[(String, String)], name: &str) -> bool {
    matches!(get(f, name), Some("on" | "1" | "true" | "yes"))
}

/// Adds `--name value` to a CLI line and `name` to a body when the field is filled.
fn opt(f: &[(String, String)], body: &mut Value, cli: &mut String, name: &str, flag: &str) {
    if let Some(v) = get(f, name) {
        body[name] = json!(v);
        cli.push_str(&format!(" --{flag} {}", sh(v)));
    }
}

/// The typed break-glass confirmation, passed on as typed (the API checks it).
fn glass(f: &[(String, String)], body: &mut Value, cli: &mut String) {
    if let Some(v) = get(f, "break_glass") {
        body["break_glass"] = json!(v);
        cli.push_str(" --break-glass");
    }
}

/// The request a form stands for; `Err` names the field that is missing or wrong.
pub fn plan(action: &str, f: &[(String, String)]) -> Result<Plan, String> {
    let p = |method, path: String, body: Option<Value>, cli: Option<String>, back| Plan {
        method,
        path,
        body,
        cli,
        back,
    };
    Ok(match action {
        "replay" => {
            let ids: Vec<&str> = f
                .iter()
                .filter(|(k, v)| k == "ids" && !v.trim().is_empty())
                .map(|(_, v)| v.trim())
                .collect();
            let channel = get(f, "channel");
            let (mut body, mut cli) = if checked(f, "all") || (ids.is_empty() && channel.is_some())
            {
                let mut b = json!({"all": true});
                let mut c = "herald dlq replay".to_string();
                match channel {
                    Some(ch) => {
                        b["channel"] = json!(ch);
                        c.push_str(&format!(" --channel {}", sh(ch)));
                    }
                    None => c.push_str(" --all"),
                }
                (b, c)
            } else if ids.is_empty() {
                return Err("ids: pick at least one dead letter, or all of them".into());
            } else {
                let c = format!(
                    "herald dlq replay {}",
                    ids.iter().map(|i| sh(i)).collect::<Vec<_>>().join(" ")
                );
                (json!({"ids": ids}), c)
            };
            opt(f, &mut body, &mut cli, "reason", "reason");
            if checked(f, "dry_run") {
                body["dry_run"] = json!(true);
                cli.push_str(" --dry-run");
            }
            glass(f, &mut body, &mut cli);
            p(
                Method::POST,
                "/v1/dead-letters/replay".into(),
                Some(body),
                Some(cli),
                "/console/dead-letters",
            )
        }
        "disable" | "enable" => {
            let id = need(f, "provider")?;
            let reason = need(f, "reason")?;
            let mut body = json!({"reason": reason});
            let mut cli = format!(
                "herald providers {action} {} --reason {}",
                sh(id),
                sh(reason)
            );
            if action == "disable" {
                if let Some(v) = get(f, "for") {
                    body["for"] = json!(v);
                    cli.push_str(&format!(" --for {}", sh(v)));
                }
                opt(f, &mut body, &mut cli, "until", "until");
                glass(f, &mut body, &mut cli);
            }
            p(
                Method::POST,
                format!("/v1/providers/{}/{action}", seg(id)),
                Some(body),
                Some(cli),
                "/console/providers",
            )
        }
        "mode" => {
            let mode = need(f, "mode")?;
            let reason = need(f, "reason")?;
            let mut body = json!({"mode": mode, "reason": reason});
            let mut cli = format!("herald mode set {} --reason {}", sh(mode), sh(reason));
            glass(f, &mut body, &mut cli);
            p(
                Method::PUT,
                "/v1/mode".into(),
                Some(body),
                Some(cli),
                "/console/mode",
            )
        }
        "approve" | "reject" | "review" => {
            let id = need(f, "id")?;
            let mut cli = format!("herald approvals {action} {}", sh(id));
            let body = match (action, get(f, "note")) {
                ("approve", Some(n)) => {
                    cli.push_str(&format!(" --note {}", sh(n)));
                    Some(json!({"note": n}))
                }
                ("reject", Some(n)) => {
                    cli.push_str(&format!(" --reason {}", sh(n)));
                    Some(json!({"reason": n}))
                }
                ("review", _) => None,
                _ => Some(json!({})),
            };
            p(
                Method::POST,
                format!("/v1/approvals/{}/{action}", seg(id)),
                body,
                Some(cli),
                "/console/approvals",
            )
        }
        "cancel" => {
            let id = need(f, "id")?;
            p(
                Method::POST,
                format!("/v1/messages/{}/cancel", seg(id)),
                None,
                None,
                "/console/messages",
            )
        }
        "key_create" => {
            let name = need(f, "name")?;
            let role = need(f, "role")?;
            p(
                Method::POST,
                "/v1/api-keys".into(),
                Some(json!({"name": name, "role": role, "approver": checked(f, "approver")})),
                None,
                "/console/keys",
            )
        }
        "key_revoke" => {
            let id = need(f, "id")?;
            p(
                Method::DELETE,
                format!("/v1/api-keys/{}", seg(id)),
                None,
                None,
                "/console/keys",
            )
        }
        "ack" | "resolve" => {
            let id = need(f, "id")?;
            let verb = if action == "ack" {
                "acknowledge"
            } else {
                "resolve"
            };
            let mut body = json!({});
            let mut cli = format!("herald incidents {action} {}", sh(id));
            opt(f, &mut body, &mut cli, "reason", "reason");
            p(
                Method::POST,
                format!("/v1/incidents/{}/{verb}", seg(id)),
                Some(body),
                Some(cli),
                "/console/incidents",
            )
        }
        "status_post" | "status_update" => {
            let status = need(f, "status")?;
            let text = need(f, "body")?;
            let mut body = json!({"status": status, "body": text});
            if let (Some(c), Some(cs)) = (get(f, "component"), get(f, "component_status")) {
                body["components"] = json!([{"id": c, "status": cs}]);
            }
            let path = if action == "status_post" {
                body["title"] = json!(need(f, "title")?);
                body["impact"] = json!(get(f, "impact").unwrap_or("minor"));
                "/v1/status/incidents".to_string()
            } else {
                format!("/v1/status/incidents/{}/updates", seg(need(f, "id")?))
            };
            p(Method::POST, path, Some(body), None, "/console/status")
        }
        other => {
            return Err(format!(
                "the console has no action `{}`",
                other.chars().take(40).collect::<String>()
            ));
        }
    })
}

/// The same request with curl, for scripts.
fn curl(plan: &Plan) -> String {
    let mut s = format!(
        "curl -X {} \"$HERALD_URL{}\" -H \"Authorization: Bearer $HERALD_KEY\"",
        plan.method, plan.path
    );
    if let Some(b) = &plan.body {
        s.push_str(&format!(
            " -H 'Content-Type: application/json' -d {}",
            sh(&b.to_string())
        ));
    }
    s
}

/// A form whose CSRF token is not this session's.
pub fn forged(state: &AppState, s: &Session) -> Response {
    view::page(
        state,
        Some(s),
        "result.html",
        "",
        "Refused",
        json!({
            "outcome": "refused",
            "problem": "This form did not come from this session (its CSRF token is missing or wrong). Nothing was done. Reload the page and try again.",
            "back": "/console",
        }),
        StatusCode::FORBIDDEN,
    )
}

pub async fn act(
    State(state): State<AppState>,
    Path(action): Path<String>,
    s: Session,
    body: Bytes,
) -> Response {
    let f = fields(&body);
    if !s.csrf_ok(field(&f, "csrf")) {
        return forged(&state, &s);
    }
    let plan = match plan(&action, &f) {
        Ok(p) => p,
        Err(problem) => {
            return view::page(
                &state,
                Some(&s),
                "result.html",
                "",
                "Not sent",
                json!({"outcome": "refused", "problem": problem, "back": "/console"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    let a = client::call(
        &state,
        &s.who,
        plan.method.clone(),
        &plan.path,
        plan.body.as_ref(),
    )
    .await;
    let preview = plan.body.as_ref().is_some_and(|b| b["dry_run"] == true) && a.ok();
    let outcome = if !a.ok() {
        "refused"
    } else if preview {
        "preview"
    } else if a.status == StatusCode::ACCEPTED && a.body["approval"].is_object() {
        "waiting"
    } else {
        "done"
    };
    let title = match outcome {
        "refused" => "Refused",
        "preview" => "Replay preview",
        "waiting" => "Waiting for a second person",
        _ => "Done",
    };
    // A preview offers the same selection again, without the dry run.
    let again: Vec<Value> = f
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "csrf" | "dry_run"))
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    view::page(
        &state,
        Some(&s),
        "result.html",
        "",
        title,
        json!({
            "outcome": outcome,
            "action": action,
            "status": a.status.as_u16(),
            "problem": (!a.ok()).then(|| a.problem()),
            "answer": a.body,
            "cli": plan.cli,
            "http": curl(&plan),
            "back": plan.back,
            "again": again,
        }),
        a.status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(sh("aliyun-main"), "aliyun-main");
        assert_eq!(sh("two words"), "'two words'");
        assert_eq!(sh("it's"), "'it'\\''s'");
        assert_eq!(sh(""), "''");
        assert_eq!(sh("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn a_provider_disable_carries_reason_expiry_and_break_glass() {
        let p = plan(
            "disable",
            &f(&[
                ("provider", "aliyun-main"),
                ("reason", "vendor incident"),
                ("for", "30m"),
                ("until", ""),
                ("break_glass", "BREAK GLASS"),
            ]),
        )
        .unwrap();
        assert_eq!(p.method, Method::POST);
        assert_eq!(p.path, "/v1/providers/aliyun-main/disable");
        assert_eq!(
            p.body.unwrap(),
            json!({"reason": "vendor incident", "for": "30m", "break_glass": "BREAK GLASS"})
        );
        assert_eq!(
            p.cli.unwrap(),
            "herald providers disable aliyun-main --reason 'vendor incident' --for 30m --break-glass"
        );
        let e = plan("disable", &f(&[("provider", "x")])).unwrap_err();
        assert!(e.starts_with("reason:"), "{e}");
        let p = plan(
            "enable",
            &f(&[("provider", "x"), ("reason", "ok"), ("for", "1h")]),
        )
        .unwrap();
        assert_eq!(
            p.body.unwrap(),
            json!({"reason": "ok"}),
            "enable has no expiry"
        );
    }

    #[test]
    fn replays_name_ids_or_everything_and_may_be_a_preview() {
        let p = plan(
            "replay",
            &f(&[
                ("ids", "msg_1"),
                ("ids", "msg_2"),
                ("reason", "fixed"),
                ("dry_run", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            p.body.unwrap(),
            json!({"ids": ["msg_1", "msg_2"], "reason": "fixed", "dry_run": true})
        );
        assert_eq!(
            p.cli.unwrap(),
            "herald dlq replay msg_1 msg_2 --reason fixed --dry-run"
        );
        let p = plan("replay", &f(&[("all", "on"), ("channel", "sms")])).unwrap();
        assert_eq!(p.body.unwrap(), json!({"all": true, "channel": "sms"}));
        assert_eq!(p.cli.unwrap(), "herald dlq replay --channel sms");
        let p = plan("replay", &f(&[("all", "on")])).unwrap();
        assert_eq!(p.cli.unwrap(), "herald dlq replay --all");
        assert!(
            plan("replay", &f(&[("reason", "x")]))
                .unwrap_err()
                .starts_with("ids:")
        );
    }

    #[test]
    fn modes_approvals_keys_incidents_and_status_posts() {
        let p = plan("mode", &f(&[("mode", "read_only"), ("reason", "db move")])).unwrap();
        assert_eq!(p.method, Method::PUT);
        assert_eq!(
            p.cli.unwrap(),
            "herald mode set read_only --reason 'db move'"
        );
        let p = plan("approve", &f(&[("id", "apr_1"), ("note", "looked")])).unwrap();
        assert_eq!(p.path, "/v1/approvals/apr_1/approve");
        assert_eq!(p.body.unwrap(), json!({"note": "looked"}));
        let p = plan("reject", &f(&[("id", "apr_1"), ("note", "no")])).unwrap();
        assert_eq!(p.body.unwrap(), json!({"reason": "no"}));
        assert_eq!(plan("review", &f(&[("id", "apr_1")])).unwrap().body, None);
        let p = plan("key_create", &f(&[("name", "ci"), ("role", "viewer")])).unwrap();
        assert_eq!(
            p.body.unwrap(),
            json!({"name": "ci", "role": "viewer", "approver": false})
        );
        let p = plan("key_revoke", &f(&[("id", "key_1")])).unwrap();
        assert_eq!(
            (p.method, p.path.as_str()),
            (Method::DELETE, "/v1/api-keys/key_1")
        );
        let p = plan("ack", &f(&[("id", "inc_1")])).unwrap();
        assert_eq!(p.path, "/v1/incidents/inc_1/acknowledge");
        assert_eq!(p.cli.unwrap(), "herald incidents ack inc_1");
        let p = plan(
            "status_post",
            &f(&[
                ("title", "Slow SMS"),
                ("status", "investigating"),
                ("body", "looking"),
                ("component", "sms"),
                ("component_status", "degraded_performance"),
            ]),
        )
        .unwrap();
        assert_eq!(p.body.as_ref().unwrap()["impact"], "minor");
        assert_eq!(
            p.body.unwrap()["components"],
            json!([{"id": "sms", "status": "degraded_performance"}])
        );
        let p = plan(
            "status_update",
            &f(&[("id", "st 1"), ("status", "resolved"), ("body", "ok")]),
        )
        .unwrap();
        assert_eq!(p.path, "/v1/status/incidents/st%201/updates");
        assert!(plan("explode", &[]).unwrap_err().contains("no action"));
        assert!(plan("cancel", &[]).unwrap_err().starts_with("id:"));
    }

    #[test]
    fn curl_lines_quote_the_body() {
        let p = plan("mode", &f(&[("mode", "normal"), ("reason", "it's over")])).unwrap();
        let c = curl(&p);
        assert!(c.starts_with("curl -X PUT \"$HERALD_URL/v1/mode\""), "{c}");
        assert!(c.contains("'\\''"), "{c}");
    }
}
