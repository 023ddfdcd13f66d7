//! The audit log's hash chain. Each entry, once sealed, carries its place in the chain (`seq`)
//! and `hash = SHA-256(prev_hash, seq, at, actor, action, target, before, after, reason)`,
//! where `prev_hash` is the hash of the entry before it (or the anchor left by the last purge,
//! or 64 zeros for the first entry ever). Editing, removing or reordering any sealed entry
//! breaks the chain at that entry; [`verify`] says where.
//!
//! The hash is taken over the stored text (the JSON of `before`/`after` as written), so
//! verifying never depends on how JSON would be re-serialised.

use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the hash covers, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub id: i64,
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub reason: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry that follows `prev`.
#[allow(clippy::too_many_arguments)]
pub fn hash(
    prev: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<&str>,
    after: Option<&str>,
    reason: Option<&str>,
) -> String {
    // A JSON array is an unambiguous encoding of the fields (no separator can be forged).
    let fields = serde_json::json!([prev, seq, at, actor, action, target, before, after, reason]);
    hex::encode(Sha256::digest(fields.to_string().as_bytes()))
}

impl Link {
    fn computed(&self, prev: &str) -> String {
        hash(
            prev,
            self.seq,
            self.at,
            &self.actor,
            &self.action,
            &self.target,
            self.before.as_deref(),
            self.after.as_deref(),
            self.reason.as_deref(),
        )
    }
}

/// Where the chain broke.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Break {
    /// The entry that does not follow from the one before it.
    pub id: i64,
    pub seq: i64,
    pub reason: String,
}

/// What checking the chain found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub ok: bool,
    /// Sealed entries checked.
    pub checked: usize,
    /// The hash of the last sealed entry (what an auditor writes down to detect a truncation
    /// later), or the anchor when nothing is left.
    pub head: String,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub broken: Option<Break>,
}

/// Checks `links` (sealed entries in `seq` order) against `anchor`: the hash the first of
/// them must follow (the last purged entry's hash, or [`GENESIS`]). With `first_seq` the
/// number the first entry must carry (one past the last purged).
pub fn verify(anchor: &str, first_seq: i64, links: &[Link]) -> Verdict {
    let mut prev = anchor.to_string();
    let mut want_seq = first_seq;
    for (i, l) in links.iter().enumerate() {
        let fault = if l.seq != want_seq {
            Some(if l.seq > want_seq {
                format!(
                    "entries {want_seq}..{} of the chain are missing",
                    l.seq.saturating_sub(1)
                )
            } else {
                format!("entry {} appears twice or out of order", l.seq)
            })
        } else if l.prev_hash != prev {
            Some("its prev_hash is not the hash of the entry before it".to_string())
        } else if l.computed(&prev) != l.hash {
            Some("its content does not match its hash (the row was edited)".to_string())
        } else {
            None
        };
        if let Some(reason) = fault {
            return Verdict {
                ok: false,
                checked: i,
                head: prev,
                first_seq: links.first().map(|l| l.seq),
                last_seq: links.last().map(|l| l.seq),
                broken: Some(Break {
                    id: l.id,
                    seq: l.seq,
                    reason,
                }),
            };
        }
        prev = l.hash.clone();
        want_seq = l.seq + 1;
    }
    Verdict {
        ok: true,
        checked: links.len(),
        head: prev,
        first_seq: links.first().map(|l| l.seq),
        last_seq: links.last().map(|l| l.seq),
        broken: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Link> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let before = Some(format!("{{\"mode\":\"m{seq}\"}}"));
                let h = hash(
                    &prev,
                    seq,
                    1000 + seq,
                    "ops",
                    "mode.set",
                    "mode",
                    before.as_deref(),
                    None,
                    Some("why"),
                );
                let l = Link {
                    id: seq * 10,
                    seq,
                    at: 1000 + seq,
                    actor: "ops".into(),
                    action: "mode.set".into(),
                    target: "mode".into(),
                    before,
                    after: None,
                    reason: Some("why".into()),
                    prev_hash: prev.clone(),
                    hash: h.clone(),
                };
                prev = h;
                l
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let c = chain(5);
        let v = verify(GENESIS, 1, &c);
        assert!(v.ok, "{v:?}");
        assert_eq!(v.checked, 5);
        assert_eq!(v.head, c[4].hash);
        assert_eq!((v.first_seq, v.last_seq), (Some(1), Some(5)));
    }

    #[test]
    fn an_empty_log_verifies_and_its_head_is_the_anchor() {
        let v = verify(GENESIS, 1, &[]);
        assert!(v.ok);
        assert_eq!(v.head, GENESIS);
    }

    #[test]
    fn each_edited_field_is_caught_at_its_entry() {
        let edits: [fn(&mut Link); 7] = [
            |l| l.actor = "someone-else".into(),
            |l| l.action = "mode.get".into(),
            |l| l.target = "x".into(),
            |l| l.at += 1,
            |l| l.before = None,
            |l| l.after = Some("{}".into()),
            |l| l.reason = Some("no reason".into()),
        ];
        for edit in edits {
            let mut c = chain(4);
            edit(&mut c[2]);
            let v = verify(GENESIS, 1, &c);
            assert!(!v.ok);
            let b = v.broken.unwrap_or_else(|| unreachable!());
            assert_eq!((b.id, b.seq), (30, 3));
            assert!(b.reason.contains("edited"), "{}", b.reason);
            assert_eq!(v.checked, 2);
        }
    }

    #[test]
    fn a_rehashed_edit_is_caught_at_the_next_entry() {
        // Someone edits entry 2 and recomputes its hash: entry 3 no longer follows it.
        let mut c = chain(4);
        c[1].reason = Some("forged".into());
        c[1].hash = c[1].computed(&c[1].prev_hash.clone());
        let b = verify(GENESIS, 1, &c)
            .broken
            .unwrap_or_else(|| unreachable!());
        assert_eq!(b.seq, 3);
        assert!(b.reason.contains("prev_hash"), "{}", b.reason);
    }

    #[test]
    fn a_removed_entry_is_caught() {
        let mut c = chain(5);
        c.remove(2);
        let b = verify(GENESIS, 1, &c)
            .broken
            .unwrap_or_else(|| unreachable!());
        assert_eq!(b.seq, 4);
        assert!(b.reason.contains("3..3"), "{}", b.reason);
    }

    #[test]
    fn swapped_entries_are_caught() {
        let mut c = chain(4);
        c.swap(1, 2);
        let b = verify(GENESIS, 1, &c)
            .broken
            .unwrap_or_else(|| unreachable!());
        assert_eq!(b.seq, 3);
    }

    #[test]
    fn a_purged_prefix_verifies_against_its_anchor_and_only_it() {
        let c = chain(6);
        let anchor = c[2].hash.clone();
        assert!(verify(&anchor, 4, &c[3..]).ok);
        assert!(!verify(GENESIS, 4, &c[3..]).ok);
        assert!(!verify(&anchor, 1, &c[3..]).ok);
    }

    #[test]
    fn the_hash_separates_fields_unambiguously() {
        let a = hash(GENESIS, 1, 1, "ab", "c", "t", None, None, None);
        let b = hash(GENESIS, 1, 1, "a", "bc", "t", None, None, None);
        let n = hash(GENESIS, 1, 1, "a", "bc", "t", Some(""), None, None);
        assert_ne!(a, b);
        assert_ne!(b, n);
    }
}
