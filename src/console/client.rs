//! The console's calls into the API: a request built as an API client would send it,
//! handed to the same router, signed in as the session's key.

use super::SignedIn;
use crate::api::AppState;
use crate::api::auth::Principal;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

/// The largest answer the console reads back (pages of at most a few hundred rows).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// An API answer: its status and its JSON body (`null` when it had none).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }
    /// The problem's words when refused, to say on the page.
    pub fn refusal(&self) -> Option<String> {
        (!self.ok()).then(|| self.problem())
    }

    /// The problem's words, for a refused call.
    pub fn problem(&self) -> String {
        let detail = self.body["detail"].as_str().unwrap_or("");
        let title = self.body["title"].as_str().unwrap_or("");
        match (title, detail) {
            ("", "") => self.status.to_string(),
            (t, "") => t.to_string(),
            (_, d) => d.to_string(),
        }
    }
}

pub async fn call(
    state: &AppState,
    who: &Principal,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut b = Request::builder().method(method).uri(path);
    let payload = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let Ok(mut req) = b.body(payload) else {
        return Answer {
            status: StatusCode::BAD_REQUEST,
            body: serde_json::json!({"detail": "the console could not form that request"}),
        };
    };
    req.extensions_mut().insert(SignedIn(who.clone()));
    let Ok(resp) = crate::api::router(state.clone()).oneshot(req).await;
    let status = resp.status();
    let body = match axum::body::to_bytes(resp.into_body(), MAX_ANSWER).await {
        Ok(bytes) if !bytes.is_empty() => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    Answer { status, body }
}

/// A GET; its `data` array (empty when refused) and the whole answer.
pub async fn list(state: &AppState, who: &Principal, path: &str) -> (Vec<Value>, Answer) {
    let a = call(state, who, Method::GET, path, None).await;
    let data = a.body["data"].as_array().cloned().unwrap_or_default();
    (data, a)
}

/// A query string from pairs, empty values left out.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    let q = s.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// A path segment, percent-encoded (all but RFC 3986's unreserved characters).
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_leave_out_empty_values_and_encode_the_rest() {
        assert_eq!(query(&[]), "");
        assert_eq!(query(&[("status", ""), ("after", "")]), "");
        assert_eq!(
            query(&[("status", "failed"), ("channel", "a b&c")]),
            "?status=failed&channel=a+b%26c"
        );
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(seg("msg_01-x.y~"), "msg_01-x.y~");
        assert_eq!(seg("é"), "%C3%A9");
    }
}
