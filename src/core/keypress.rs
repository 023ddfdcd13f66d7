//! A key a person pressed during a call Herald placed (Twilio `<Gather>`, Aliyun IvrCall or
//! DTMF reports): the seam through which a page is acknowledged by phone. Receipt handlers
//! publish one [`Keypress`] per key report; whoever needs them (the on-call engine)
//! subscribes. Pure: the type and the check of what a provider reported.

use super::types::Millis;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Keypress {
    pub provider: String,
    pub delivery_id: String,
    pub message_id: String,
    /// What was pressed: digits, `*` and `#`.
    pub digits: String,
    pub at: Millis,
}

/// Whether a message asks its call to collect a key (`metadata.voice_keypress = true`).
pub fn wanted(metadata: &serde_json::Map<String, serde_json::Value>) -> bool {
    metadata.get("voice_keypress").and_then(|v| v.as_bool()) == Some(true)
}

/// The digits of a provider's report, if they are keys at all (1 to 32 of `0-9*#`).
pub fn digits(reported: &str) -> Option<String> {
    let d = reported.trim();
    (!d.is_empty()
        && d.len() <= 32
        && d.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#'))
    .then(|| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::digits;

    #[test]
    fn only_keys_are_keys() {
        assert_eq!(digits("1"), Some("1".into()));
        assert_eq!(digits(" 12# "), Some("12#".into()));
        assert_eq!(digits("*"), Some("*".into()));
        assert_eq!(digits(""), None);
        assert_eq!(digits("1a"), None);
        assert_eq!(digits(&"1".repeat(33)), None);
    }
}
