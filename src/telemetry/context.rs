//! W3C Trace Context (`traceparent`): parsing what a caller sends, making child spans, and
//! writing the header Herald passes on. Pure: no clock, no I/O.

use std::fmt;

/// One span's place in a trace: the trace it belongs to, its own id, and whether the trace
/// is sampled (the `01` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// A new trace with a random id, sampled.
    pub fn root() -> Self {
        TraceParent {
            trace_id: nonzero(),
            span_id: nonzero(),
            sampled: true,
        }
    }

    /// A span under this one: same trace and flags, a new span id.
    pub fn child(&self) -> Self {
        TraceParent {
            span_id: nonzero(),
            ..*self
        }
    }

    /// A `traceparent` header as the W3C recommendation reads it: version `00` exactly 55
    /// characters; a later version at least that long, with a `-` after the flags when
    /// longer (its extra fields are ignored); version `ff`, upper-case hex, or an all-zero
    /// trace or span id are invalid (`None`: the request starts a new trace).
    pub fn parse(header: &str) -> Option<Self> {
        let h = header.trim_matches(|c| c == ' ' || c == '\t');
        let b = h.as_bytes();
        if b.len() < 55 || !h.is_ascii() {
            return None;
        }
        let version = hex_bytes::<1>(&h[0..2])?[0];
        if version == 0xff || (version == 0 && b.len() != 55) {
            return None;
        }
        if b.len() > 55 && b[55] != b'-' {
            return None;
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let trace_id = hex_bytes::<16>(&h[3..35])?;
        let span_id = hex_bytes::<8>(&h[36..52])?;
        let flags = hex_bytes::<1>(&h[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    pub fn trace_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn span_hex(&self) -> String {
        hex::encode(self.span_id)
    }
}

/// The header value: `00-<trace id>-<span id>-<flags>`.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{}",
            self.trace_hex(),
            self.span_hex(),
            if self.sampled { "01" } else { "00" }
        )
    }
}

/// Lower-case hex of exactly `N` bytes (the recommendation refuses upper case).
fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2
        || !s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Random bytes, never all zero (an all-zero id is invalid).
fn nonzero<const N: usize>() -> [u8; N] {
    loop {
        let b: [u8; N] = rand::random();
        if b != [0; N] {
            return b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_recommendations_example_round_trips() {
        let t = TraceParent::parse(GOOD).unwrap();
        assert_eq!(t.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_hex(), "00f067aa0ba902b7");
        assert!(t.sampled);
        assert_eq!(t.to_string(), GOOD);
    }

    #[test]
    fn flags_other_than_sampled_are_read_for_the_sampled_bit_only() {
        let t = TraceParent::parse(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!t.sampled);
        assert!(t.to_string().ends_with("-00"));
        assert!(
            TraceParent::parse(&GOOD.replace("-01", "-03"))
                .unwrap()
                .sampled
        );
    }

    #[test]
    fn invalid_headers_start_a_new_trace() {
        for bad in [
            "",
            "00",
            &GOOD.to_uppercase(),
            &GOOD.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            &GOOD.replace("00f067aa0ba902b7", &"0".repeat(16)),
            &GOOD.replacen("00-", "ff-", 1),
            &format!("{GOOD}-extra"), // version 00 is exactly 55 characters
            &GOOD.replace('-', "_"),
            &GOOD.replacen('4', "g", 1),
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", // one digit short
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é", // not ASCII
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01xx",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_for_its_first_fields() {
        let later = GOOD.replacen("00-", "01-", 1);
        assert!(TraceParent::parse(&later).is_some());
        assert!(TraceParent::parse(&format!("{later}-what-comes-next")).is_some());
        assert_eq!(TraceParent::parse(&format!("{later}x")), None);
    }

    #[test]
    fn surrounding_spaces_are_ignored() {
        assert!(TraceParent::parse(&format!(" {GOOD}\t")).is_some());
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_with_a_new_span() {
        let p = TraceParent::parse(GOOD).unwrap();
        let c = p.child();
        assert_eq!(c.trace_id, p.trace_id);
        assert_eq!(c.sampled, p.sampled);
        assert_ne!(c.span_id, p.span_id);
        assert_ne!(c.span_id, [0; 8]);
        let r = TraceParent::root();
        assert_ne!(r.trace_id, [0; 16]);
        assert!(r.sampled);
        assert_eq!(TraceParent::parse(&r.to_string()), Some(r));
    }
}
