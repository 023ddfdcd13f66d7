//! `[retention]`: how long Herald keeps what it no longer needs. A job under a job lease (one
//! node of a cluster at a time) deletes in bounded batches.

use super::Dur;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Whether the job runs on this node.
    pub enabled: bool,
    /// How often it runs.
    pub every: Dur,
    /// Finished messages (sent, delivered, failed, expired, cancelled — dead letters
    /// included) with their deliveries, attempts and receipts, by their last update.
    pub messages: Dur,
    /// Inbox items, read or not, by when they arrived.
    pub inbox: Dur,
    /// The audit log: kept longest.
    pub audit: Dur,
    /// Rows of nodes that stopped or died, by their last heartbeat.
    pub nodes: Dur,
    /// Rows deleted per statement (a pass repeats until less is left).
    pub batch: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            every: Dur::secs(3600),
            messages: Dur::secs(30 * 86_400),
            inbox: Dur::secs(90 * 86_400),
            audit: Dur::secs(400 * 86_400),
            nodes: Dur::secs(7 * 86_400),
            batch: 5_000,
        }
    }
}
