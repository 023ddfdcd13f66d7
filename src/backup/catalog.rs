//! What a backup holds: Herald's tables, their columns in a fixed order and the order rows are
//! written in. Both backends have these tables with the same columns (TEXT or 64-bit integer),
//! which is what lets a backup taken from one restore into the other.
//!
//! Left out on purpose: `nodes`, `job_leases` and `rate_events` (state of the running nodes,
//! meaningless after a restore) and each backend's `schema_migrations`.

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
        ],
        key: &["provider"],
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

    /// Every column named here exists in both backends' schemas, so a dump reads and a
    /// restore writes the same columns everywhere.
    #[test]
    fn every_column_is_in_both_schemas() {
        let sqlite = [
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0002_templates_receipts.sql"),
            include_str!("../../migrations/sqlite/0003_operators_flow.sql"),
        ]
        .concat();
        let pg = include_str!("../../migrations/postgres/0001_init.sql");
        for t in TABLES {
            for schema in [&sqlite, pg] {
                assert!(
                    schema.contains(&format!("CREATE TABLE {} (", t.name)),
                    "{}",
                    t.name
                );
            }
            for (c, _) in t.columns {
                for schema in [&sqlite, pg] {
                    assert!(
                        schema.contains(&format!("    {c} "))
                            || schema.contains(&format!("    \"{c}\" "))
                            || schema.contains(&format!("COLUMN {c} ")),
                        "{}.{c}",
                        t.name
                    );
                }
            }
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
