//! The words of SPEC §1 as types.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(format!(
                        "`{}` is not one of: {}",
                        s.chars().take(64).collect::<String>(),
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// A way of reaching a person.
    Channel { Sms => "sms", Email => "email", Push => "push", Chat => "chat",
              Webhook => "webhook", Inbox => "inbox", Voice => "voice" }
);

string_enum!(
    /// Claim order: `critical` first. The discriminant order is the claim order.
    Priority { Critical => "critical", High => "high", Normal => "normal", Low => "low" }
);

impl Priority {
    /// Rank stored in the queue index: 0 is claimed first.
    pub fn rank(self) -> i64 {
        self as i64
    }
    pub fn from_rank(r: i64) -> Priority {
        match r {
            0 => Priority::Critical,
            1 => Priority::High,
            3 => Priority::Low,
            _ => Priority::Normal,
        }
    }
}

string_enum!(
    /// How several channels of one message are used.
    Strategy { Failover => "failover", All => "all" }
);

string_enum!(
    /// API key roles; each includes the ones after it.
    Role { Admin => "admin", Operator => "operator", Sender => "sender", Viewer => "viewer" }
);

impl Role {
    /// Whether this role may do what `needed` may do.
    pub fn allows(self, needed: Role) -> bool {
        (self as u8) <= (needed as u8)
    }
}

string_enum!(
    /// Message status (SPEC "Read").
    MessageStatus { Queued => "queued", Sending => "sending", Sent => "sent", Delivered => "delivered",
                    Failed => "failed", Expired => "expired", Cancelled => "cancelled" }
);

string_enum!(
    /// Delivery status. `pending` is internal (a failover channel waiting its turn) and is
    /// shown to users as `queued`.
    DeliveryStatus { Pending => "pending", Queued => "queued", Sending => "sending", Sent => "sent",
                     Delivered => "delivered", Failed => "failed", Expired => "expired",
                     Cancelled => "cancelled", Skipped => "skipped" }
);

impl DeliveryStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            DeliveryStatus::Pending | DeliveryStatus::Queued | DeliveryStatus::Sending
        )
    }
    pub fn is_success(self) -> bool {
        matches!(self, DeliveryStatus::Sent | DeliveryStatus::Delivered)
    }
    /// The status shown by the API.
    pub fn public(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "queued",
            s => s.as_str(),
        }
    }
}

string_enum!(
    /// SPEC error classes of a failed provider call.
    ErrorClass { Transient => "transient", Recipient => "recipient", Provider => "provider",
                 Rejected => "rejected" }
);

/// Milliseconds since the Unix epoch: the one clock type stored and compared.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// RFC 3339 UTC with millisecond precision.
pub fn rfc3339(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

/// Parses an RFC 3339 timestamp (any offset) to milliseconds.
pub fn parse_rfc3339(s: &str) -> Result<Millis, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| "must be an RFC 3339 timestamp such as 2026-11-23T08:00:00Z".to_string())
}

/// A new id: `prefix_` and a ULID, so ids sort by creation time.
pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_after_them() {
        assert!(Role::Admin.allows(Role::Viewer));
        assert!(Role::Operator.allows(Role::Sender));
        assert!(Role::Sender.allows(Role::Sender));
        assert!(!Role::Sender.allows(Role::Operator));
        assert!(!Role::Viewer.allows(Role::Sender));
    }

    #[test]
    fn enums_round_trip_and_refuse_strangers() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), *c);
        }
        assert!("fax".parse::<Channel>().unwrap_err().contains("sms"));
        assert!(Priority::Critical.rank() < Priority::Low.rank());
        assert_eq!(Priority::from_rank(Priority::High.rank()), Priority::High);
    }

    #[test]
    fn timestamps_round_trip() {
        let ms = parse_rfc3339("2026-11-23T08:00:00.123Z").unwrap();
        assert_eq!(rfc3339(ms), "2026-11-23T08:00:00.123Z");
        assert_eq!(
            parse_rfc3339("2026-11-23T10:00:00+02:00").unwrap(),
            parse_rfc3339("2026-11-23T08:00:00Z").unwrap()
        );
        assert!(parse_rfc3339("tomorrow").is_err());
        assert!(new_id("msg").starts_with("msg_"));
    }
}
