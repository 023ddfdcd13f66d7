//! Templates (minijinja): per-channel parts rendered when a message is accepted, so that a
//! missing parameter is a `422` at send time and never a failure later. Undefined variables
//! are errors; HTML is escaped in `html` parts only.

use crate::core::message::Content;
use crate::core::types::Channel;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Chat robots: a markdown body (DingTalk, WeCom, Slack mrkdwn); `subject` is its title.
    pub markdown: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsPart {
    pub text: Option<String>,
    /// Provider id → the provider's own template code (Aliyun `TemplateCode`, VMS `TtsCode`).
    #[serde(default)]
    pub provider_templates: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    pub id: String,
    /// What kind of message it is (`billing`, `marketing`…): contacts may opt out of a
    /// category. A message's `metadata.category` takes precedence.
    #[serde(default)]
    pub category: Option<String>,
    /// Channels used when a message names no `channels`.
    #[serde(default)]
    pub channels: Vec<Channel>,
    pub sms: Option<SmsPart>,
    /// What a call says: `text` (Twilio `<Say>`), or the provider's approved TTS template
    /// (Aliyun VMS `TtsCode`) in `provider_templates`.
    pub voice: Option<SmsPart>,
    pub email: Option<Part>,
    pub chat: Option<Part>,
    pub push: Option<Part>,
    pub webhook: Option<Part>,
    pub inbox: Option<Part>,
}

impl TemplateConfig {
    fn part(&self, channel: Channel) -> Option<Part> {
        match channel {
            Channel::Sms => self.sms.as_ref().map(|s| Part {
                text: s.text.clone(),
                ..Part::default()
            }),
            Channel::Voice => self.voice.as_ref().map(|s| Part {
                text: s.text.clone(),
                ..Part::default()
            }),
            Channel::Email => self.email.clone(),
            Channel::Chat => self.chat.clone(),
            Channel::Push => self.push.clone(),
            Channel::Webhook => self.webhook.clone(),
            Channel::Inbox => self.inbox.clone(),
        }
    }
}

pub struct Templates {
    env: Environment<'static>,
    by_id: HashMap<String, TemplateConfig>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("ids", &self.by_id.keys().collect::<Vec<_>>())
            .finish()
    }
}

const FIELDS: [&str; 4] = ["subject", "text", "html", "markdown"];

fn field<'a>(p: &'a Part, name: &str) -> Option<&'a String> {
    match name {
        "subject" => p.subject.as_ref(),
        "text" => p.text.as_ref(),
        "html" => p.html.as_ref(),
        _ => p.markdown.as_ref(),
    }
}

impl Templates {
    /// Compiles every part; a syntax error names the template and the part.
    pub fn new(list: &[TemplateConfig]) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        // A chat message's parameters are escaped for the robot that gets it, so that a
        // value cannot add mentions (`<!channel>`, `<at …>`) or links; the template's own
        // text is kept as written.
        env.set_formatter(|out, state, value| {
            let kind = state
                .lookup(CHAT_KIND)
                .and_then(|v| v.as_str().map(String::from));
            let field = state.name().rsplit('.').next().unwrap_or("");
            match kind {
                Some(kind) if !value.is_safe() && field != "html" => {
                    let raw = match value.as_str() {
                        Some(s) => s.to_string(),
                        None => value.to_string(),
                    };
                    out.write_str(&escape_chat(&kind, field, &raw))
                        .map_err(|_| {
                            minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write")
                        })
                }
                _ => minijinja::escape_formatter(out, state, value),
            }
        });
        let mut by_id = HashMap::new();
        for (i, t) in list.iter().enumerate() {
            if t.id.is_empty() || by_id.contains_key(&t.id) {
                return Err(format!(
                    "templates[{i}]: id `{}` is empty or used twice",
                    t.id
                ));
            }
            if let Some(c) = &t.category {
                crate::core::contact::valid_category(c)
                    .map_err(|m| format!("templates `{}` category: {m}", t.id))?;
            }
            for ch in Channel::ALL {
                let Some(part) = t.part(*ch) else { continue };
                for f in FIELDS {
                    if let Some(src) = field(&part, f) {
                        env.add_template_owned(format!("{}/{}.{f}", t.id, ch), src.clone())
                            .map_err(|e| format!("templates `{}` {ch}.{f}: {e}", t.id))?;
                    }
                }
            }
            by_id.insert(t.id.clone(), t.clone());
        }
        Ok(Templates { env, by_id })
    }

    pub fn get(&self, id: &str) -> Option<&TemplateConfig> {
        self.by_id.get(id)
    }

    /// The provider's own template code for this template, if it has one.
    /// The provider's own template code for template `id` (SMS or voice: provider ids are
    /// unique, so the provider's entry is in the part of its channel).
    pub fn provider_template(&self, id: &str, provider: &str) -> Option<&str> {
        let t = self.by_id.get(id)?;
        [t.sms.as_ref(), t.voice.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|p| p.provider_templates.get(provider))
            .map(String::as_str)
    }

    /// Renders the template's part for `channel`. Errors name what is wrong in words a
    /// caller can act on (a missing parameter, a channel the template has no part for).
    pub fn render(
        &self,
        id: &str,
        channel: Channel,
        params: &Map<String, Value>,
    ) -> Result<Content, String> {
        self.render_for(id, channel, params, None)
    }

    /// As [`Templates::render`], for a chat robot of `chat_kind` (`slack`, `dingtalk`,
    /// `feishu`, `wecom`): parameters are escaped for its format.
    pub fn render_for(
        &self,
        id: &str,
        channel: Channel,
        params: &Map<String, Value>,
        chat_kind: Option<&str>,
    ) -> Result<Content, String> {
        let t = self
            .by_id
            .get(id)
            .ok_or_else(|| format!("unknown template `{id}`"))?;
        let part = t
            .part(channel)
            .ok_or_else(|| format!("template `{id}` has no `{channel}` part"))?;
        let mut with_kind = params.clone();
        if let Some(k) = chat_kind {
            with_kind.insert(CHAT_KIND.into(), Value::String(k.to_string()));
        }
        let ctx = minijinja::Value::from(minijinja::value::Serde(&with_kind));
        let mut out = Content::default();
        for f in FIELDS {
            if field(&part, f).is_none() {
                continue;
            }
            let tmpl = self
                .env
                .get_template(&format!("{id}/{channel}.{f}"))
                .map_err(|e| e.to_string())?;
            let rendered = tmpl.render(&ctx).map_err(|e| describe(&e, channel, f))?;
            match f {
                "subject" => out.subject = Some(rendered),
                "text" => out.text = Some(rendered),
                "html" => out.html = Some(rendered),
                _ => out.markdown = Some(rendered),
            }
        }
        Ok(out)
    }
}

/// Where the chat robot's kind travels in a rendering's context (not a valid parameter name
/// for users, who cannot set it: it is overwritten).
const CHAT_KIND: &str = "__herald_chat_kind";

/// Escapes a parameter for a chat robot's format: Slack's `&`, `<`, `>` (which also make
/// mentions and links); markdown punctuation for DingTalk and WeCom markdown and for Teams
/// (an Adaptive Card's TextBlock renders markdown in its text too); tags for
/// Feishu text (`<at …>`). Plain text parts of DingTalk and WeCom carry no markup.
pub fn escape_chat(kind: &str, field: &str, s: &str) -> String {
    match (kind, field) {
        ("slack", _) => s
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
        ("feishu", _) => s.replace('<', "<\u{200b}"),
        ("dingtalk" | "wecom" | "teams", "markdown") | ("teams", "text") => {
            let mut out = String::with_capacity(s.len() + 8);
            for c in s.chars() {
                if "\\`*_{}[]()#+-.!<>|~".contains(c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        }
        _ => s.to_string(),
    }
}

fn describe(e: &minijinja::Error, channel: Channel, field: &str) -> String {
    match e.kind() {
        minijinja::ErrorKind::UndefinedError => {
            format!(
                "{channel}.{field}: a parameter the template uses is missing ({})",
                e.detail().unwrap_or("undefined value")
            )
        }
        _ => format!("{channel}.{field}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates() -> Templates {
        let t: TemplateConfig = toml::from_str(
            r#"
            id = "verify_code"
            channels = ["sms", "email"]
            sms = { text = "Your code is {{ code }}", provider_templates = { aliyun-main = "SMS_123456" } }
            email = { subject = "Code for {{ name }}", text = "Hi {{ name }}, {{ code }}", html = "<p>Hi {{ name }}</p>" }
            "#,
        )
        .unwrap();
        Templates::new(&[t]).unwrap()
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn renders_each_part_and_escapes_html_only() {
        let t = templates();
        let p = params(json!({"code": "123456", "name": "<Ann & Bob>"}));
        let e = t.render("verify_code", Channel::Email, &p).unwrap();
        assert_eq!(e.subject.as_deref(), Some("Code for <Ann & Bob>"));
        assert_eq!(e.text.as_deref(), Some("Hi <Ann & Bob>, 123456"));
        assert_eq!(e.html.as_deref(), Some("<p>Hi &lt;Ann &amp; Bob&gt;</p>"));
        let s = t.render("verify_code", Channel::Sms, &p).unwrap();
        assert_eq!(s.text.as_deref(), Some("Your code is 123456"));
        assert_eq!(
            t.provider_template("verify_code", "aliyun-main"),
            Some("SMS_123456")
        );
    }

    #[test]
    fn a_missing_parameter_is_an_error_not_an_empty_string() {
        let t = templates();
        let err = t
            .render("verify_code", Channel::Sms, &params(json!({})))
            .unwrap_err();
        assert!(err.contains("missing"), "{err}");
        assert!(
            t.render("verify_code", Channel::Chat, &params(json!({"code": "1"})))
                .unwrap_err()
                .contains("no `chat` part")
        );
        assert!(t.render("nope", Channel::Sms, &Map::new()).is_err());
    }

    #[test]
    fn syntax_errors_are_reported_at_start() {
        let t = TemplateConfig {
            id: "bad".into(),
            sms: Some(SmsPart {
                text: Some("{{ oops".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = Templates::new(&[t]).unwrap_err();
        assert!(err.contains("bad") && err.contains("sms.text"), "{err}");
    }

    #[test]
    fn chat_parameters_are_escaped_for_their_robot() {
        let t: TemplateConfig = toml::from_str(
            r#"
            id = "alert"
            channels = ["chat"]
            chat = { text = "<!here> Disk {{ host }}", markdown = "**Disk** [{{ host }}](https://grafana/{{ host }})" }
            "#,
        )
        .unwrap();
        let ts = Templates::new(&[t]).unwrap();
        let p = json!({"host": "<!channel> <https://evil|click> & [x](https://evil) <at user_id=\"all\">"});
        let params = p.as_object().unwrap().clone();
        let slack = ts
            .render_for("alert", Channel::Chat, &params, Some("slack"))
            .unwrap();
        let text = slack.text.unwrap();
        assert!(
            text.starts_with("<!here> Disk "),
            "the template's own markup stays: {text}"
        );
        assert!(
            !text.contains("<!channel>") && !text.contains("<https://evil"),
            "{text}"
        );
        assert!(
            text.contains("&lt;!channel&gt;") && text.contains("&amp;"),
            "{text}"
        );
        let ding = ts
            .render_for("alert", Channel::Chat, &params, Some("dingtalk"))
            .unwrap();
        let md = ding.markdown.unwrap();
        assert!(md.starts_with("**Disk** ["), "{md}");
        assert!(!md.contains("[x](https://evil)"), "{md}");
        assert!(md.contains("\\[x\\]\\(https://evil\\)"), "{md}");
        let feishu = ts
            .render_for("alert", Channel::Chat, &params, Some("feishu"))
            .unwrap();
        assert!(!feishu.text.unwrap().contains("<at "), "no mention tag");
        // Without a robot kind (other channels) nothing changes.
        let plain = ts.render("alert", Channel::Chat, &params).unwrap();
        assert!(plain.text.unwrap().contains("<!channel>"));
    }
}
