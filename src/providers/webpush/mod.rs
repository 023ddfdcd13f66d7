//! Web Push (RFC 8030 delivery, RFC 8291 encryption, RFC 8292 VAPID).

pub mod ece;
pub mod provider;
pub mod vapid;
