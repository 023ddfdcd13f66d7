//! Email through a real SMTP server (aiosmtpd, started here): plain, and STARTTLS with a
//! self-signed certificate and AUTH. What arrives is read back: subject, from, to, UTF-8
//! text and html, the Message-ID. SMTP refusals are classed by their codes.

use crate::utils::TestHerald;
use crate::utils::rig::provider;
use crate::utils::smtp::{SmtpServer, mails, start_smtp};
use herald::config::ProviderKind;
use herald::core::types::Channel;
use serde_json::{Value, json};

async fn herald_for(smtp: &SmtpServer, tls: &str) -> TestHerald {
    let port = smtp.port.to_string();
    let ca = smtp.cert.as_ref().map(|c| c.to_string_lossy().to_string());
    let tls = tls.to_string();
    TestHerald::start_with(move |c| {
        let mut opts: Vec<(&str, &str)> = vec![
            ("host", "127.0.0.1"),
            ("tls", &tls),
            ("from", "Herald Alerts <alerts@herald.example>"),
        ];
        if let Some(ca) = &ca {
            opts.push(("ca_file", ca));
        }
        let creds: &[(&str, &str)] = if ca.is_some() {
            &[("username", "gw"), ("password", "smtp-password-value")]
        } else {
            &[]
        };
        let mut p = provider(
            "smtp-main",
            Channel::Email,
            ProviderKind::Smtp,
            1,
            "",
            creds,
            &opts,
        );
        p.options
            .insert("port".into(), toml::Value::Integer(port.parse().unwrap()));
        c.providers = vec![p];
    })
    .await
}

async fn send_and_read(h: &TestHerald, smtp: &SmtpServer) -> (String, Value) {
    let (code, r) = h
        .send(json!({"to": {"email": "ops@example.com"}, "content": {
            "subject": "Disk full — 磁盘已满",
            "text": "Hello ✓ 你好, /var is at 97%",
            "html": "<p>Hello <b>✓ 你好</b></p>"}}))
        .await;
    assert_eq!(code, 202, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let m = h.wait_status(&id, "sent").await;
    assert_eq!(m["deliveries"][0]["provider"], "smtp-main");
    let got = mails(&smtp.out);
    assert_eq!(got.len(), 1, "{got:#?}");
    (id, got[0].clone())
}

fn check_mail(id: &str, mail: &Value) {
    assert_eq!(mail["subject"], "Disk full — 磁盘已满");
    assert_eq!(mail["from"], "Herald Alerts <alerts@herald.example>");
    assert_eq!(mail["to"], "ops@example.com");
    assert_eq!(
        mail["text"].as_str().unwrap().trim_end(),
        "Hello ✓ 你好, /var is at 97%"
    );
    assert_eq!(
        mail["html"].as_str().unwrap().trim_end(),
        "<p>Hello <b>✓ 你好</b></p>"
    );
    assert!(
        mail["message_id"].as_str().unwrap().contains(id),
        "Message-ID carries the Herald id: {mail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_smtp_delivers_utf8_text_and_html() {
    let smtp = start_smtp(false);
    let h = herald_for(&smtp, "none").await;
    let (id, mail) = send_and_read(&h, &smtp).await;
    check_mail(&id, &mail);
    assert_eq!(mail["tls"], false);

    // Refusals are classed by their codes: 550 5.1.1 is the recipient's, 451 is transient.
    let (_, r) = h.send(json!({"to": {"email": "unknown@example.com"}, "content": {"subject": "s", "text": "t"}})).await;
    let m = h.wait_status(r["id"].as_str().unwrap(), "failed").await;
    let e = &m["deliveries"][0]["attempts"][0]["error"];
    assert_eq!(
        (e["class"].as_str(), e["code"].as_str()),
        (Some("recipient"), Some("smtp_550_5.1.1")),
        "{m:#}"
    );
    let (_, r) = h
        .send(
            json!({"to": {"email": "busy@example.com"}, "content": {"subject": "s", "text": "t"}}),
        )
        .await;
    let m = h.wait_status(r["id"].as_str().unwrap(), "failed").await;
    let a = m["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(a.len(), 10, "retried up to dispatch.max_attempts: {m:#}");
    assert!(
        a.iter().all(|x| x["error"]["code"] == "smtp_451_4.3.0"),
        "{m:#}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_self_signed_certificate_and_auth() {
    let smtp = start_smtp(true);
    let h = herald_for(&smtp, "starttls").await;
    let (id, mail) = send_and_read(&h, &smtp).await;
    check_mail(&id, &mail);
    assert_eq!(mail["tls"], true);
    assert_eq!(mail["auth"], "gw");
    h.stop().await;

    // Without trusting the certificate the TLS handshake fails: a provider (configuration) error.
    let h = TestHerald::start_with(|c| {
        let mut p = provider(
            "smtp-main",
            Channel::Email,
            ProviderKind::Smtp,
            1,
            "",
            &[("username", "gw"), ("password", "smtp-password-value")],
            &[
                ("host", "127.0.0.1"),
                ("tls", "starttls"),
                ("from", "alerts@herald.example"),
            ],
        );
        p.options
            .insert("port".into(), toml::Value::Integer(smtp.port as i64));
        c.providers = vec![p];
    })
    .await;
    let (_, r) = h
        .send(json!({"to": {"email": "ops@example.com"}, "content": {"subject": "s", "text": "t"}}))
        .await;
    let m = h.wait_status(r["id"].as_str().unwrap(), "failed").await;
    assert_eq!(
        m["deliveries"][0]["attempts"][0]["error"]["class"], "provider",
        "{m:#}"
    );
    h.stop().await;
}
