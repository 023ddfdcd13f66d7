//! Email over SMTP (lettre): `none`, `starttls` or `tls`, AUTH, text and html as
//! multipart/alternative in UTF-8, a Message-ID that carries the Herald ids, pooled
//! connections. 4xx replies are transient; 5xx are classed by the enhanced status code.

use super::common::{Base, check_keys, error, opt_string};
use super::{Provider, Receipt, SendError};
use crate::config::ProviderConfig;
use crate::core::types::{Channel, ErrorClass as C};
use crate::store::Claimed;
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// The class of an SMTP failure from its basic code and enhanced code `c.s.d`
/// (PROVIDERS.md §7).
pub fn classify(basic: u16, enhanced: Option<(u16, u16, u16)>) -> C {
    if (400..500).contains(&basic) {
        return C::Transient;
    }
    match enhanced {
        Some((_, 1, _)) | Some((_, 2, 1)) | Some((_, 2, 2)) => return C::Recipient,
        Some((_, 7, 8)) | Some((_, 7, 9)) | Some((_, 7, 0)) if matches!(basic, 530 | 534 | 535) => {
            return C::Provider;
        }
        Some((_, 7, 8)) => return C::Provider,
        Some((_, 7, _)) | Some((_, 6, _)) | Some((_, 3, 4)) | Some((_, 2, 3)) => {
            return C::Rejected;
        }
        _ => {}
    }
    match basic {
        530 | 534 | 535 => C::Provider,
        550 | 551 | 553 | 521 | 556 => C::Recipient,
        _ => C::Rejected,
    }
}

/// Finds an enhanced status code like `5.1.1` in a server reply.
pub fn enhanced_code(text: &str) -> Option<(u16, u16, u16)> {
    text.split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')')
        .find_map(|w| {
            let mut parts = w.split('.');
            let c: u16 = parts.next()?.parse().ok()?;
            let s: u16 = parts.next()?.parse().ok()?;
            let d: u16 = parts.next()?.parse().ok()?;
            (parts.next().is_none() && matches!(c, 2 | 4 | 5)).then_some((c, s, d))
        })
}

pub struct SmtpProvider {
    base: Base,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpProvider {
    pub fn from_config(cfg: &ProviderConfig) -> Result<Self, String> {
        check_keys(
            cfg,
            &["username", "password"],
            &["host", "port", "tls", "from", "ca_file", "pool_size"],
        )?;
        let id = &cfg.id;
        let base = Base::without_endpoint(cfg, "use options.host and options.port")?;
        let host = opt_string(cfg, "host")?
            .ok_or_else(|| format!("providers `{id}`: options.host is required"))?;
        let tls_mode = opt_string(cfg, "tls")?.unwrap_or_else(|| "starttls".into());
        let port = match cfg.options.get("port") {
            None => match tls_mode.as_str() {
                "tls" => 465,
                "starttls" => 587,
                _ => 25,
            },
            Some(toml::Value::Integer(p)) if (1..=65535).contains(p) => *p as u16,
            Some(_) => {
                return Err(format!(
                    "providers `{id}`: options.port must be a port number"
                ));
            }
        };
        let from: Mailbox = opt_string(cfg, "from")?
            .ok_or_else(|| format!("providers `{id}`: options.from is required"))?
            .parse()
            .map_err(|e| format!("providers `{id}`: options.from: {e}"))?;
        let mut tls_params = TlsParameters::builder(host.clone());
        if let Some(ca) = opt_string(cfg, "ca_file")? {
            let pem = std::fs::read(&ca)
                .map_err(|e| format!("providers `{id}`: options.ca_file {ca}: {e}"))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("providers `{id}`: options.ca_file: {e}"))?;
            tls_params = tls_params.add_root_certificate(cert);
        }
        let tls = match tls_mode.as_str() {
            "none" => Tls::None,
            "starttls" | "tls" => {
                let p = tls_params
                    .build_rustls()
                    .map_err(|e| format!("providers `{id}`: TLS: {e}"))?;
                if tls_mode == "tls" {
                    Tls::Wrapper(p)
                } else {
                    Tls::Required(p)
                }
            }
            other => {
                return Err(format!(
                    "providers `{id}`: options.tls must be none, starttls or tls, not `{other}`"
                ));
            }
        };
        let pool_size = match cfg.options.get("pool_size") {
            None => 8,
            Some(toml::Value::Integer(n)) if (1..=256).contains(n) => *n as u32,
            Some(_) => {
                return Err(format!(
                    "providers `{id}`: options.pool_size must be 1 to 256"
                ));
            }
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(base.timeout))
            .pool_config(PoolConfig::new().max_size(pool_size));
        match (
            cfg.credentials.get("username"),
            cfg.credentials.get("password"),
        ) {
            (Some(u), Some(p)) => {
                b = b.credentials(Credentials::new(
                    u.expose().to_string(),
                    p.expose().to_string(),
                ))
            }
            (None, None) => {}
            _ => {
                return Err(format!(
                    "providers `{id}`: give both credentials.username and credentials.password, or neither"
                ));
            }
        }
        Ok(SmtpProvider {
            base,
            from,
            transport: b.build(),
        })
    }

    fn build(&self, m: &Claimed) -> Result<Message, SendError> {
        let reject = |code: &str, detail: String| SendError::Rejected {
            code: code.into(),
            detail,
        };
        let to: Mailbox = m.to.parse().map_err(|e| SendError::Recipient {
            code: "bad_address".into(),
            detail: format!("{e}"),
        })?;
        let domain = self.from.email.domain().to_string();
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.content.subject.clone().unwrap_or_default())
            .message_id(Some(format!(
                "<{}.{}@{domain}>",
                m.message_id, m.lease.delivery_id
            )));
        let text = m.content.text.clone().filter(|t| !t.is_empty());
        let html = m.content.html.clone().filter(|t| !t.is_empty());
        let msg = match (text, html) {
            (Some(t), Some(h)) => builder.multipart(MultiPart::alternative_plain_html(t, h)),
            (Some(t), None) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(t),
            ),
            (None, Some(h)) => {
                builder.singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(h))
            }
            (None, None) => {
                return Err(reject(
                    "no_body",
                    "the message has no text or html for email".into(),
                ));
            }
        };
        msg.map_err(|e| reject("bad_message", e.to_string()))
    }
}

#[async_trait]
impl Provider for SmtpProvider {
    crate::provider_basics!("smtp", Channel::Email);

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let msg = self.build(m)?;
        match self.transport.send(msg).await {
            Ok(resp) => Ok(Receipt {
                provider_message_id: resp.message().next().map(|s| s.chars().take(200).collect()),
            }),
            Err(e) => {
                let detail = e.to_string();
                let Some(code) = e.status() else {
                    // lettre reports a certificate the server cannot be trusted with as a
                    // connection error; either way it is configuration, not a passing fault.
                    return Err(if e.is_tls() || detail.contains("certificate") {
                        SendError::Provider {
                            code: "tls".into(),
                            detail,
                        }
                    } else {
                        SendError::Transient {
                            code: if e.is_timeout() {
                                "timeout".into()
                            } else {
                                "connection_failed".into()
                            },
                            detail,
                            retry_after: None,
                        }
                    });
                };
                let basic: u16 = code.to_string().parse().unwrap_or(0);
                let enhanced = enhanced_code(&detail);
                let code_s = match enhanced {
                    Some((c, s, d)) => format!("smtp_{basic}_{c}.{s}.{d}"),
                    None => format!("smtp_{basic}"),
                };
                Err(error(classify(basic, enhanced), code_s, detail, None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classed_by_basic_and_enhanced_codes() {
        assert_eq!(classify(421, None), C::Transient);
        assert_eq!(classify(450, Some((4, 2, 1))), C::Transient);
        assert_eq!(classify(550, Some((5, 1, 1))), C::Recipient);
        assert_eq!(classify(552, Some((5, 2, 2))), C::Recipient);
        assert_eq!(classify(535, Some((5, 7, 8))), C::Provider);
        assert_eq!(classify(530, Some((5, 7, 0))), C::Provider);
        assert_eq!(classify(550, Some((5, 7, 1))), C::Rejected);
        assert_eq!(classify(554, None), C::Rejected);
        assert_eq!(classify(550, None), C::Recipient);
        assert_eq!(classify(552, Some((5, 3, 4))), C::Rejected);
    }

    #[test]
    fn enhanced_codes_are_found_in_replies() {
        assert_eq!(
            enhanced_code("permanent error (550): 5.1.1 User unknown"),
            Some((5, 1, 1))
        );
        assert_eq!(
            enhanced_code("535 5.7.8 Authentication credentials invalid"),
            Some((5, 7, 8))
        );
        assert_eq!(enhanced_code("550 mailbox unavailable"), None);
        assert_eq!(enhanced_code("version 1.2.3 of x"), None);
    }
}
