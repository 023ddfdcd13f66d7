//! Reading request bodies: size limit (413), JSON parse errors and bad UTF-8 as 422 naming
//! where the problem is. Depth is bounded by serde_json's recursion limit.

use crate::error::ApiError;
use axum::body::Body;
use serde_json::Value;

pub async fn read_json(body: Body, limit: u64) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(body, limit as usize)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            if too_large {
                ApiError::too_large(limit)
            } else {
                ApiError::field("body", format!("cannot read the request body: {e}"))
            }
        })?;
    parse_json(&bytes)
}

pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::field(
            "body",
            "the request body is empty; send a JSON object",
        ));
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::field(
            "body",
            "the request body is not valid UTF-8",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = if e.to_string().contains("recursion limit") {
            "the JSON is nested too deeply".to_string()
        } else {
            format!(
                "invalid JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                e
            )
        };
        ApiError::field("body", msg)
    })
}

/// Reads and decodes a typed body; errors name the field.
pub async fn read_typed<T: serde::de::DeserializeOwned>(
    body: Body,
    limit: u64,
) -> Result<T, ApiError> {
    let value = read_json(body, limit).await?;
    crate::core::validate::decode_as(value).map_err(|e| ApiError::validation(vec![e]))
}

/// [`read_json`], an empty body read as `{}` (actions whose fields are all optional).
pub async fn read_json_or_empty(body: Body, limit: u64) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(body, limit as usize)
        .await
        .map_err(|_| ApiError::too_large(limit))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let v = parse_json(&bytes)?;
    if !v.is_object() {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    Ok(v)
}

/// White space as JSON Schema's `\s` knows it (ECMAScript's WhiteSpace and LineTerminator):
/// what the OpenAPI document's patterns mean, so trimming agrees with them (Rust's
/// `char::is_whitespace` also takes U+0085 and leaves out U+FEFF).
pub fn schema_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{d}'
            | ' '
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
            | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::schema_space;

    #[test]
    fn trimming_agrees_with_the_documents_patterns() {
        assert_eq!(" \u{feff}why\u{3000}".trim_matches(schema_space), "why");
        assert_eq!(
            "\u{85}".trim_matches(schema_space),
            "\u{85}",
            "NEL is not \\s in JSON Schema"
        );
        assert!(!schema_space('x') && schema_space('\n') && schema_space('\u{a0}'));
    }
}
