//! On-call: who is on call when (schedules), and whom an incident pages next (escalation).
//! Pure decisions; storage and timers live elsewhere.

pub mod ack_link;
pub mod bundle;
pub mod escalation;
pub mod policy_doc;
pub mod reply;
pub mod schedule;
pub mod schedule_doc;
pub mod stats;

/// The rule for a schedule's or policy's `name`: 1 to 200 characters (counted as given), not
/// only white space (JSON Schema's `\s`, as the OpenAPI document's pattern means it), and no
/// control characters anywhere (trimming does not hide them).
pub(crate) fn name_fault(name: &str) -> Option<String> {
    let blank = name.trim_matches(crate::api::body::schema_space).is_empty();
    if blank || name.chars().count() > 200 || name.chars().any(char::is_control) {
        Some("must be 1 to 200 characters, not only spaces, no control characters".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::name_fault;

    #[test]
    fn names_are_counted_as_given_and_trimmed_as_the_document_trims() {
        assert!(name_fault("DB primary").is_none());
        assert!(
            name_fault(&"é".repeat(200)).is_none(),
            "characters, not bytes"
        );
        assert!(
            name_fault(&format!(" {}", "a".repeat(200))).is_some(),
            "201 as given"
        );
        assert!(
            name_fault(" \u{feff}\u{3000}").is_some(),
            "only white space"
        );
        assert!(
            name_fault("ok\n").is_some(),
            "a control character at an end"
        );
        assert!(
            name_fault("a\u{85}b").is_some(),
            "NEL is a control character"
        );
    }
}
