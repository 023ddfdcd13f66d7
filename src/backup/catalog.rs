//! What a backup holds: Herald's tables, their columns in a fixed order and the order rows are
//! written in. Both backends have these tables with the same columns (TEXT or 64-bit integer),
//! which is what lets a backup taken from one restore into the other.
//!
//! Left out on purpose: `nodes`, `job_leases` and `rate_events` (state of the running nodes,
//! meaningless after a restore) and each backend's `schema_migrations`.

/// Tables deliberately not backed up (state of the running nodes), besides each backend's
/// `schema_migrations`.
pub const LEFT_OUT: &[&str] = &[
    "nodes",
    "job_leases",
    "rate_events",
    "console_sessions",
    "schema_migrations",
];

/// Version of the logical layout below; a backup restores only into the same version.
pub const LAYOUT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
}

#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    /// Columns of the primary key: rows are written in this order (byte order for text).
    pub key: &'static [&'static str],
}

use Kind::{Int as I, Text as T};

/// In restore order: a row's references come before it.
pub const TABLES: &[Table] = &[
    Table {
        name: "messages",
        columns: &[
            ("id", T),
            ("status", T),
            ("priority", I),
            ("strategy", T),
            ("sender", T),
            ("created_at", I),
            ("updated_at", I),
            ("send_at", I),
            ("expires_at", I),
            ("body", T),
        ],
        key: &["id"],
    },
    Table {
        name: "deliveries",
        columns: &[
            ("id", T),
            ("message_id", T),
            ("position", I),
            ("channel", T),
            ("recipient", T),
            ("status", T),
            ("priority", I),
            ("due_at", I),
            ("fence", I),
            ("tries", I),
            ("lease_owner", T),
            ("provider", T),
            ("skip_providers", T),
            ("updated_at", I),
            ("content", T),
            ("provider_message_id", T),
            ("activated_at", I),
        ],
        key: &["id"],
    },
    Table {
        name: "attempts",
        columns: &[
            ("delivery_id", T),
            ("n", I),
            ("provider", T),
            ("at", I),
            ("duration_ms", I),
            ("outcome", T),
            ("error_class", T),
            ("error_code", T),
            ("error_detail", T),
            ("provider_message_id", T),
        ],
        key: &["delivery_id", "n"],
    },
    Table {
        name: "dead_letters",
        columns: &[
            ("message_id", T),
            ("channel", T),
            ("priority", I),
            ("failed_at", I),
            ("last_error", T),
        ],
        key: &["message_id"],
    },
    Table {
        name: "idempotency",
        columns: &[
            ("scope", T),
            ("key", T),
            ("body_hash", T),
            ("message_id", T),
            ("reply", T),
            ("created_at", I),
        ],
        key: &["scope", "key"],
    },
    Table {
        name: "inbox",
        columns: &[
            ("id", T),
            ("user", T),
            ("message_id", T),
            ("delivery_id", T),
            ("body", T),
            ("created_at", I),
            ("read_at", I),
        ],
        key: &["id"],
    },
    Table {
        name: "api_keys",
        columns: &[
            ("id", T),
            ("name", T),
            ("role", T),
            ("key_hash", T),
            ("prefix", T),
            ("created_at", I),
            ("revoked_at", I),
            ("rate_limit", T),
            ("approver", I),
        ],
        key: &["id"],
    },
    Table {
        name: "audit",
        columns: &[
            ("id", I),
            ("at", I),
            ("actor", T),
            ("action", T),
            ("target", T),
            ("before", T),
            ("after", T),
            ("reason", T),
            ("seq", I),
            ("prev_hash", T),
            ("hash", T),
        ],
        key: &["id"],
    },
    Table {
        name: "receipts",
        columns: &[
            ("provider", T),
            ("receipt_key", T),
            ("delivery_id", T),
            ("status", T),
            ("received_at", I),
            ("detail", T),
        ],
        key: &["provider", "receipt_key"],
    },
    Table {
        name: "settings",
        columns: &[
            ("key", T),
            ("value", T),
            ("reason", T),
            ("actor", T),
            ("updated_at", I),
        ],
        key: &["key"],
    },
    Table {
        name: "provider_switches",
        columns: &[
            ("provider", T),
            ("disabled", I),
            ("reason", T),
            ("actor", T),
            ("updated_at", I),
            ("until", I),
        ],
        key: &["provider"],
    },
    Table {
        name: "oncall_documents",
        columns: &[
            ("kind", T),
            ("id", T),
            ("body", T),
            ("version", I),
            ("created_at", I),
            ("updated_at", I),
        ],
        key: &["kind", "id"],
    },
    Table {
        name: "escalations",
        columns: &[
            ("incident_id", T),
            ("policy_id", T),
            ("state", T),
            ("step", I),
            ("pass", I),
            ("round", I),
            ("fired_step", I),
            ("fired_pass", I),
            ("due_at", I),
            ("lease_owner", T),
            ("lease_until", I),
            ("fence", I),
            ("first_page_at", I),
            ("first_ack_at", I),
            ("first_ack_step", I),
        ],
        key: &["incident_id"],
    },
    Table {
        name: "pages",
        columns: &[
            ("key", T),
            ("incident_id", T),
            ("step", I),
            ("pass", I),
            ("round", I),
            ("person", T),
            ("method", T),
            ("address", T),
            ("reply_code", I),
            ("message_id", T),
            ("created_at", I),
            ("kind", T),
            ("note", T),
            ("not_before", I),
            ("hold_until", I),
            ("bundle_id", T),
        ],
        key: &["key"],
    },
    Table {
        name: "bundles",
        columns: &[
            ("id", T),
            ("person", T),
            ("method", T),
            ("kind", T),
            ("address", T),
            ("reply_code", I),
            ("size", I),
            ("message_id", T),
            ("created_at", I),
        ],
        key: &["id"],
    },
    Table {
        name: "storms",
        columns: &[
            ("incident_id", T),
            ("scope", T),
            ("started_at", I),
            ("ended_at", I),
            ("count", I),
        ],
        key: &["incident_id"],
    },
    Table {
        name: "spent_links",
        columns: &[("nonce", T), ("spent_at", I)],
        key: &["nonce"],
    },
    Table {
        name: "contacts",
        columns: &[
            ("id", T),
            ("body", T),
            ("version", I),
            ("created_at", I),
            ("updated_at", I),
        ],
        key: &["id"],
    },
    Table {
        name: "delivery_notes",
        columns: &[("delivery_id", T), ("code", T), ("detail", T), ("at", I)],
        key: &["delivery_id"],
    },
    Table {
        name: "incidents",
        columns: &[
            ("id", T),
            ("number", I),
            ("dedup_key", T),
            ("source", T),
            ("route", T),
            ("service", T),
            ("severity", T),
            ("status", T),
            ("title", T),
            ("details", T),
            ("opened_at", I),
            ("acknowledged_at", I),
            ("acknowledged_by", T),
            ("resolved_at", I),
            ("resolved_by", T),
            ("page_state", T),
            ("notice_state", T),
            ("notify_resolved", I),
            ("updated_at", I),
            ("grouped_into", T),
            ("inhibited_by", T),
        ],
        key: &["id"],
    },
    Table {
        name: "occurrences",
        columns: &[
            ("incident_id", T),
            ("fingerprint", T),
            ("starts_at", I),
            ("status", T),
            ("ends_at", I),
            ("labels", T),
            ("annotations", T),
            ("generator_url", T),
            ("updated_at", I),
        ],
        key: &["incident_id", "fingerprint", "starts_at"],
    },
    Table {
        name: "incident_events",
        columns: &[
            ("incident_id", T),
            ("n", I),
            ("at", I),
            ("kind", T),
            ("actor", T),
            ("detail", T),
        ],
        key: &["incident_id", "n"],
    },
    Table {
        name: "maintenance_windows",
        columns: &[
            ("id", T),
            ("matchers", T),
            ("starts_at", I),
            ("ends_at", I),
            ("reason", T),
            ("actor", T),
            ("created_at", I),
        ],
        key: &["id"],
    },
    Table {
        name: "heartbeats",
        columns: &[("id", T), ("last_ping", I), ("pings", I)],
        key: &["id"],
    },
    Table {
        name: "incident_messages",
        columns: &[("incident_id", T), ("message_id", T), ("kind", T)],
        key: &["incident_id", "message_id"],
    },
    Table {
        name: "approvals",
        columns: &[
            ("id", T),
            ("action", T),
            ("params", T),
            ("summary", T),
            ("reason", T),
            ("requester", T),
            ("requester_name", T),
            ("status", T),
            ("created_at", I),
            ("expires_at", I),
            ("decided_by", T),
            ("decided_at", I),
            ("decision_note", T),
            ("result", T),
            ("break_glass", I),
            ("reviewed_by", T),
            ("reviewed_at", I),
        ],
        key: &["id"],
    },
    Table {
        name: "status_incidents",
        columns: &[
            ("id", T),
            ("title", T),
            ("impact", T),
            ("status", T),
            ("components", T),
            ("incident_id", T),
            ("created_at", I),
            ("updated_at", I),
            ("resolved_at", I),
        ],
        key: &["id"],
    },
    Table {
        name: "status_updates",
        columns: &[
            ("id", T),
            ("incident", T),
            ("status", T),
            ("body", T),
            ("actor", T),
            ("created_at", I),
        ],
        key: &["id"],
    },
    Table {
        name: "status_days",
        columns: &[
            ("component", T),
            ("day", T),
            ("degraded", I),
            ("partial", I),
            ("major", I),
            ("maintenance", I),
            ("sampled", I),
            ("last_minute", I),
        ],
        key: &["component", "day"],
    },
];

pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// `"a", "b", …` — every identifier quoted (`user`, `key` are reserved words somewhere).
pub fn column_list(t: &Table) -> String {
    t.columns
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `SELECT … FROM t ORDER BY key` with text keys in byte order on both backends.
pub fn select_sql(t: &Table, postgres: bool) -> String {
    let order = t
        .key
        .iter()
        .map(|k| {
            let text = t
                .columns
                .iter()
                .any(|(c, kind)| c == k && *kind == Kind::Text);
            if postgres && text {
                format!("\"{k}\" COLLATE \"C\"")
            } else {
                format!("\"{k}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {} FROM \"{}\" ORDER BY {order}",
        column_list(t),
        t.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalogue and a freshly migrated SQLite database agree both ways: every
    /// catalogued column exists, and every column of every table exists in the catalogue
    /// (a column added by a migration cannot be left out of backups unnoticed); every table
    /// is catalogued or left out on purpose. PostgreSQL: `tests/it` checks the same.
    #[test]
    fn the_catalogue_matches_the_sqlite_schema_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::sqlite::SqliteStore::open(&dir.path().join("c.db"), false).unwrap();
        drop(store);
        let conn = rusqlite::Connection::open(dir.path().join("c.db")).unwrap();
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for t in &tables {
            assert!(
                table(t).is_some() || LEFT_OUT.contains(&t.as_str()),
                "table `{t}` is neither catalogued nor left out on purpose"
            );
        }
        for t in TABLES {
            let mut real: Vec<String> = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{}')", t.name))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let mut listed: Vec<String> = t.columns.iter().map(|(c, _)| c.to_string()).collect();
            real.sort();
            listed.sort();
            assert_eq!(listed, real, "columns of `{}`", t.name);
        }
    }

    #[test]
    fn postgres_orders_text_keys_by_bytes() {
        let t = table("attempts").unwrap();
        assert_eq!(
            select_sql(t, true),
            "SELECT \"delivery_id\", \"n\", \"provider\", \"at\", \"duration_ms\", \"outcome\", \"error_class\", \"error_code\", \"error_detail\", \"provider_message_id\" FROM \"attempts\" ORDER BY \"delivery_id\" COLLATE \"C\", \"n\""
        );
    }
}
