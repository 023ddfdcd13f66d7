//! The console's defences, over plain HTTP: sign-in and its cookie, the headers of every
//! page, missing and forged CSRF tokens, expired sessions, revoked keys, a viewer at an
//! operator's button, page weights; and a session opened on one node used on another
//! (PostgreSQL).

use crate::utils::{ADMIN, TestHerald, pg};
use reqwest::Method;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use std::time::Duration;

fn client() -> reqwest::Client {
    crate::utils::http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.to_string())
}

fn value_of(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

struct Signed {
    cookie: String,
    csrf: String,
}

/// Signs in on `base` with `key` as a browser would; the session cookie and a form token.
async fn sign_in(base: &str, key: &str) -> Signed {
    let c = client();
    let r = c
        .get(format!("{base}/console/signin"))
        .send()
        .await
        .unwrap();
    let pre = value_of(&cookie_value(r.headers(), "herald_signin").unwrap());
    let token = csrf_in(&r.text().await.unwrap());
    let r = c
        .post(format!("{base}/console/signin"))
        .header("cookie", format!("herald_signin={pre}"))
        .form(&[("csrf", token.as_str()), ("key", key)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let set = cookie_value(r.headers(), "herald_session").unwrap();
    let cookie = format!("herald_session={}", value_of(&set));
    let page = c
        .get(format!("{base}/console/mode"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Signed {
        csrf: csrf_in(&page),
        cookie,
    }
}

/// A GET with the session's cookie (redirects not followed).
async fn get_as(url: String, s: &Signed) -> reqwest::Response {
    client()
        .get(url)
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap()
}

async fn post(base: &str, s: &Signed, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = client()
        .post(format!("{base}{path}"))
        .header("cookie", &s.cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn key(h: &TestHerald, name: &str, role: &str) -> (String, String) {
    h.api_key(name, role, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_cookies_headers_and_csrf_hold() {
    let h = TestHerald::start().await;
    let base = h.base.clone();
    let c = client();

    // Not signed in: pages send to the sign-in form, buttons are refused.
    let r = c.get(format!("{base}/console")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/console/signin");
    let r = c
        .post(format!("{base}/console/do/mode"))
        .form(&[("mode", "read_only"), ("reason", "x"), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The sign-in form: its own token, a wrong key refused.
    let r = c
        .get(format!("{base}/console/signin"))
        .send()
        .await
        .unwrap();
    let headers = r.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    let pre = value_of(&cookie_value(&headers, "herald_signin").unwrap());
    let token = csrf_in(&r.text().await.unwrap());
    let r = c
        .post(format!("{base}/console/signin"))
        .header("cookie", format!("herald_signin={pre}"))
        .form(&[("csrf", token.as_str()), ("key", "hk_not_a_key")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("unknown or revoked"));
    let r = c
        .post(format!("{base}/console/signin"))
        .form(&[("csrf", token.as_str()), ("key", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no sign-in cookie, no sign-in");

    // The session cookie's attributes.
    let r = c
        .post(format!("{base}/console/signin"))
        .header("cookie", format!("herald_signin={pre}"))
        .form(&[("csrf", token.as_str()), ("key", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = cookie_value(r.headers(), "herald_session").unwrap();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(set.contains(attr), "{set}");
    }

    // Missing and forged tokens change nothing.
    let s = sign_in(&base, ADMIN).await;
    for form in [
        vec![("mode", "read_only"), ("reason", "x")],
        vec![("mode", "read_only"), ("reason", "x"), ("csrf", "forged")],
    ] {
        let (code, body) = post(&base, &s, "/console/do/mode", &form).await;
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("CSRF"), "{body}");
    }
    assert_eq!(h.get("/v1/mode").await.1["mode"], "normal");
    // Another session's token is not this one's.
    let other = sign_in(&base, ADMIN).await;
    assert_ne!(other.csrf, s.csrf);
    let (code, _) = post(
        &base,
        &s,
        "/console/do/mode",
        &[
            ("mode", "read_only"),
            ("reason", "x"),
            ("csrf", &other.csrf),
        ],
    )
    .await;
    assert_eq!(code, 403);
    // The right one works, and is audited like the API.
    let (code, body) = post(
        &base,
        &s,
        "/console/do/mode",
        &[
            ("mode", "core_only"),
            ("reason", "from the console"),
            ("csrf", &s.csrf),
        ],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("herald mode set core_only --reason &#x27;from the console&#x27;"));
    let (_, log) = h.get("/v1/audit?limit=5").await;
    let e = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "mode.set")
        .unwrap()
        .clone();
    assert_eq!(e["actor"], "admin");
    assert_eq!(e["reason"], "from the console");

    // A viewer's press on an operator's button is refused with the API's 403.
    let (viewer, viewer_id) = key(&h, "vic", "viewer").await;
    let v = sign_in(&base, &viewer).await;
    let (code, body) = post(
        &base,
        &v,
        "/console/do/mode",
        &[("mode", "normal"), ("reason", "x"), ("csrf", &v.csrf)],
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(h.get("/v1/mode").await.1["mode"], "core_only");
    // A revoked key's sessions end with it.
    let (code, _) = h
        .call(Method::DELETE, &format!("/v1/api-keys/{viewer_id}"), None)
        .await;
    assert_eq!(code, 204);
    let start = std::time::Instant::now();
    loop {
        let r = get_as(format!("{base}/console/providers"), &v).await;
        if r.status() == 303 {
            break;
        }
        // Key lookups are cached for 10 s on a node.
        assert!(start.elapsed() < Duration::from_secs(30), "{}", r.status());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Signing out ends the session on the server, not only in the browser.
    let (code, _) = post(&base, &s, "/console/signout", &[("csrf", &s.csrf)]).await;
    assert_eq!(code, 303);
    let r = get_as(format!("{base}/console"), &s).await;
    assert_eq!(r.status(), 303, "the old cookie opens nothing");

    // Every page is small (the status page under 60 KB, console pages under 100 KB, even
    // uncompressed) and names no other host.
    let o = sign_in(&base, ADMIN).await;
    for p in [
        "/console",
        "/console/messages",
        "/console/dead-letters",
        "/console/providers",
        "/console/mode",
        "/console/approvals",
        "/console/audit",
        "/console/nodes",
        "/console/keys",
        "/console/contacts",
        "/console/incidents",
        "/console/backups",
        "/console/status",
        "/console/assets/console.css",
        "/console/assets/console.js",
    ] {
        let r = get_as(format!("{base}{p}"), &o).await;
        assert_eq!(r.status(), 200, "{p}");
        let body = r.text().await.unwrap();
        assert!(body.len() < 100_000, "{p}: {} bytes", body.len());
        assert!(!body.contains("src=\"http"), "{p} loads from another host");
        assert!(!body.contains("href=\"http"), "{p} links another host");
    }
    let status = c
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.len() < 60_000, "{} bytes", status.len());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refused() {
    let h = TestHerald::start_with(|c| c.console.session_ttl = herald::config::Dur::secs(1)).await;
    let s = sign_in(&h.base, ADMIN).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = get_as(format!("{}/console", h.base), &s).await;
    assert_eq!(r.status(), 303);
    let (code, body) = post(
        &h.base,
        &s,
        "/console/do/mode",
        &[("mode", "read_only"), ("reason", "x"), ("csrf", &s.csrf)],
    )
    .await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("session has ended"), "{body}");
    assert_eq!(h.get("/v1/mode").await.1["mode"], "normal");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_on_one_node_works_on_another() {
    let url = pg::fresh_db().await;
    let u2 = url.clone();
    let a = TestHerald::start_with(move |c| c.storage.url = Some(url)).await;
    let b = TestHerald::start_with(move |c| c.storage.url = Some(u2)).await;
    let s = sign_in(&a.base, ADMIN).await;
    let r = get_as(format!("{}/console/nodes", b.base), &s).await;
    assert_eq!(r.status(), 200);
    let (code, body) = post(
        &b.base,
        &s,
        "/console/do/mode",
        &[
            ("mode", "core_only"),
            ("reason", "on node b"),
            ("csrf", &s.csrf),
        ],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // Node a takes the mode from storage within seconds.
    let start = std::time::Instant::now();
    while a.get("/v1/mode").await.1["mode"] != "core_only" {
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.stop().await;
    b.stop().await;
}

/// The `#` column of the audit table (sequence numbers), in page order.
fn audit_seqs(html: &str) -> Vec<i64> {
    let table = &html[html.find("<table id=\"audit\">").unwrap()..];
    table
        .split("<tr><td>")
        .skip(1)
        .filter_map(|row| row.split("</td>").next()?.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_pages_miss_nothing_and_the_live_stream_ends_with_the_session() {
    let h = TestHerald::start().await;
    for i in 0..130 {
        key(&h, &format!("k{i}"), "viewer").await;
    }
    let s = sign_in(&h.base, ADMIN).await;
    let get = |url: String| {
        let s = &s;
        async move {
            let r = get_as(url, s).await;
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let first = get(format!("{}/console/audit", h.base)).await;
    let mut seqs = audit_seqs(&first);
    assert_eq!(seqs.len(), 100, "a page shows 100");
    let at = first.find("rel=\"next\"").expect("a next page");
    let href = first[..at]
        .rsplit("href=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let href = href.replace("&amp;", "&").replace("&#x2f;", "/");
    let second = get(format!("{}{href}", h.base)).await;
    seqs.extend(audit_seqs(&second));
    // 130 key creations and a sign-in: 131 entries, newest first, none skipped.
    assert_eq!(seqs.len(), 131, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] == w[1] + 1), "{seqs:?}");

    // The live stream sends figures, and ends soon after the session does.
    let mut r = get_as(format!("{}/console/events", h.base), &s).await;
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: figures"));
    let (code, _) = post(&h.base, &s, "/console/signout", &[("csrf", &s.csrf)]).await;
    assert_eq!(code, 303);
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = String::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: signed_out") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ended, Ok(true), "the stream ends with the session");
    h.stop().await;
}
