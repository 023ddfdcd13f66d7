//! The typed configuration (SPEC §3): built-in defaults, then the TOML file, then `HERALD_*`
//! environment overrides; `${VAR}` interpolation; unknown keys refused by name.

mod check;
mod console;
pub mod ha;
mod load;
mod offsite;
mod oncall;
mod provider;
mod retention;
mod telemetry;
mod units;

pub use console::{ApprovalsConfig, CRITICAL_ACTIONS, ConsoleConfig, StatusConfig};
pub use load::{ConfigError, load, load_from_str};
pub use offsite::OffsiteConfig;
pub use oncall::OnCallConfig;
pub use provider::{ProviderConfig, ProviderKind, redact_robot_url};
pub use retention::RetentionConfig;
pub use telemetry::TelemetryConfig;
pub use units::{ByteSize, Dur, Rate, Secret};

use crate::core::types::{Channel, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub webhook: WebhookConfig,
    pub dispatch: DispatchConfig,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub degrade: BTreeMap<Channel, Vec<Channel>>,
    pub circuit: CircuitConfig,
    pub cluster: ClusterConfig,
    pub api_keys: Vec<ApiKeyConfig>,
    pub providers: Vec<ProviderConfig>,
    pub templates: Vec<crate::templates::TemplateConfig>,
    /// Where alerts go: `[[alert_routes]]` (see docs/alerts.md).
    pub alert_routes: Vec<crate::core::alerts::routes::RouteConfig>,
    /// Dead man's switches: `[[heartbeats]]`.
    pub heartbeats: Vec<crate::core::alerts::heartbeats::HeartbeatConfig>,
    /// Escalation, replies and acknowledge links: `[oncall]` (see docs/oncall.md).
    pub oncall: OnCallConfig,
    pub backup: BackupConfig,
    pub drill: DrillConfig,
    pub retention: RetentionConfig,
    /// Two-person approval of critical switches.
    pub approvals: ApprovalsConfig,
    /// The operator console at `/console`.
    pub console: ConsoleConfig,
    /// The public status page at `/status`.
    pub status: StatusConfig,
    /// Traces over OTLP/HTTP.
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// How often `serve` takes a backup (one node of a cluster at a time). Unset: never.
    pub every: Option<Dur>,
    /// Backups kept in `dir`; older ones are deleted after each new one.
    pub keep: usize,
    /// Where backups are written (default `<data_dir>/backups`).
    pub dir: Option<PathBuf>,
    /// age recipient (`age1…`) that backups are encrypted to. Unset: not encrypted.
    pub encrypt_to: Option<String>,
    /// Off-site copies in S3-compatible object storage, uploaded after each backup.
    pub offsite: Option<OffsiteConfig>,
    /// Backups per chain: 1, every backup is full; N, a full one then N-1 incrementals
    /// (only what changed since the one before).
    pub full_every: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            every: None,
            keep: 7,
            dir: None,
            encrypt_to: None,
            offsite: None,
            full_every: 1,
        }
    }
}

/// What `herald drill run` must show for the drill to pass (exit 0).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrillConfig {
    /// Longest time from the fault to Herald noticing it (circuit open, node declared dead,
    /// storage marked down).
    pub max_detect: Dur,
    /// Longest time from the fault to full service again (RTO).
    pub max_recover: Dur,
    /// Messages acknowledged and then lost (RPO in messages); the promise is 0.
    pub max_lost: u64,
    /// Messages delivered twice (at-least-once allows some when a node dies mid-call).
    pub max_duplicates: u64,
    /// Paging drill: longest time from the drill incident opening to its first page.
    pub max_time_to_page: Dur,
    /// Paging drill: longest time from the first page to a person's acknowledgement.
    pub max_time_to_ack: Dur,
}

impl Default for DrillConfig {
    fn default() -> Self {
        DrillConfig {
            max_detect: Dur::secs(10),
            max_recover: Dur::secs(30),
            max_lost: 0,
            max_duplicates: 200,
            max_time_to_page: Dur::secs(30),
            max_time_to_ack: Dur::secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Queued deliveries past which sends are shed: `low` at 80 %, `normal` at 100 %
    /// (`503` with `Retry-After`); `high` and `critical` are never shed.
    pub max_queue: u64,
    /// Per address and channel, against SMS pumping: e.g. `sms = ["1/min", "5/h", "10/day"]`.
    /// `critical` messages are exempt; excess is `429 recipient_rate_limited`. `sms` and
    /// `voice` have defaults ([`LimitsConfig::DEFAULT_RECIPIENT`]) unless set here (`[]` for
    /// none).
    pub recipient: BTreeMap<Channel, Vec<Rate>>,
}

impl LimitsConfig {
    /// What a phone number may receive when `[limits] recipient` does not say: enough for a
    /// login code and two resends, too little for SMS pumping to pay.
    pub const DEFAULT_RECIPIENT: &[(Channel, &[&str])] = &[
        (Channel::Sms, &["3/min", "10/h", "20/day"]),
        (Channel::Voice, &["2/min", "6/h", "12/day"]),
    ];

    /// Adds the default limit of each channel the configuration does not name.
    pub fn with_default_recipient_limits(mut self) -> Self {
        for (ch, rates) in Self::DEFAULT_RECIPIENT {
            self.recipient
                .entry(*ch)
                .or_insert_with(|| rates.iter().filter_map(|r| Rate::parse(r).ok()).collect());
        }
        self
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_queue: 1_000_000,
            recipient: BTreeMap::new(),
        }
        .with_default_recipient_limits()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// How often this node records that it is alive.
    pub heartbeat: Dur,
    /// A node silent this long is dead: any node takes its leases over.
    pub dead_after: Dur,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            heartbeat: Dur::secs(1),
            dead_after: Dur::secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {
    /// Recent calls the failure rate is taken over.
    pub window: usize,
    /// Fewest calls in the window before the rate counts.
    pub min_calls: usize,
    /// Share of failed calls that opens the circuit.
    pub failure_rate: f64,
    /// Failures in a row that open it.
    pub consecutive: u32,
    /// How long it stays open before a probe is let through.
    pub open_for: Dur,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            window: 20,
            min_calls: 5,
            failure_rate: 0.5,
            consecutive: 3,
            open_for: Dur::secs(5),
        }
    }
}

impl CircuitConfig {
    pub fn breaker(&self) -> crate::core::circuit::BreakerConfig {
        crate::core::circuit::BreakerConfig {
            window: self.window.max(1),
            min_calls: self.min_calls,
            failure_rate: self.failure_rate,
            consecutive: self.consecutive.max(1),
            open_ms: self.open_for.0.as_millis() as i64,
            probes: 1,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Folder for the SQLite file, the admin key and (later) the spool and backups.
    pub data_dir: PathBuf,
    /// How providers reach this gateway (receipt callbacks).
    pub public_url: Option<String>,
    /// Largest request body for single-message routes.
    pub max_body: ByteSize,
    /// Largest request body for `/v1/messages/batch`.
    pub max_batch_body: ByteSize,
    /// On SIGTERM, how long in-flight deliveries may take before their leases are released.
    pub shutdown_grace: Dur,
    /// Whether `/metrics` needs no key (SPEC: open by default).
    pub metrics_open: bool,
    /// A client must send a request's whole head (line and headers) within this; it is also
    /// how long a kept-alive connection may sit idle before its next request.
    pub header_read_timeout: Dur,
    /// Open client connections at most (also held under the process's file limit); past it
    /// new connections wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./herald-data"),
            public_url: None,
            max_body: ByteSize(1 << 20),
            max_batch_body: ByteSize(16 << 20),
            shutdown_grace: Dur::secs(10),
            metrics_open: true,
            header_read_timeout: Dur::secs(10),
            max_connections: 10_000,
        }
    }
}

#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://PATH`; empty means `<data_dir>/herald.db`.
    pub url: Option<String>,
}

/// Never the password: a `?cfg` in a log shows the URL redacted.
impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Hosts webhooks may be sent to: exact names or IPs, `*.example.com`, or `*` for any
    /// public host. Private and loopback addresses need an entry of their own.
    pub allowed_hosts: Vec<String>,
    /// Timeout of one webhook call.
    pub timeout: Dur,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allowed_hosts: vec!["*".into()],
            timeout: Dur::secs(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Whether this node runs the dispatcher (off: an API-only node).
    pub enabled: bool,
    /// Provider calls in flight at once on this node.
    pub concurrency: usize,
    /// Deliveries claimed per round trip to storage.
    pub claim_batch: usize,
    /// How long a claim is held before another worker may take the delivery.
    pub lease: Dur,
    /// How often idle workers look for due work (they are also woken on accept).
    pub poll: Dur,
    /// Attempts per delivery before it fails for good.
    pub max_attempts: u32,
    /// Retry backoff: first delay, growth factor, cap (full jitter is applied).
    pub retry_base: Dur,
    pub retry_factor: u32,
    pub retry_cap: Dur,
    /// How often providers without receipt pushes are asked for delivery reports.
    pub receipt_poll: Dur,
    /// A channel still retrying after this long gives way to the message's next channel.
    pub failover_after: Dur,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            enabled: true,
            concurrency: 256,
            claim_batch: 256,
            lease: Dur::secs(60),
            poll: Dur::millis(250),
            max_attempts: 10,
            retry_base: Dur::secs(1),
            retry_factor: 2,
            retry_cap: Dur::secs(300),
            receipt_poll: Dur::secs(30),
            failover_after: Dur::secs(120),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or an EnvFilter directive; `RUST_LOG` wins.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    pub key: Secret,
    pub role: Role,
    /// Requests this key may make (`"100/s"`); excess is `429 rate_limited`.
    #[serde(default)]
    pub rate_limit: Option<Rate>,
    /// May approve critical switches another key asked for (`[approvals]`).
    #[serde(default)]
    pub approver: bool,
}

impl Config {
    /// Where messages are stored: SQLite (the default, `<data_dir>/herald.db`) or PostgreSQL.
    pub fn backend(&self) -> Result<Backend, ConfigError> {
        match self.storage.url.as_deref() {
            None | Some("") => Ok(Backend::Sqlite(self.server.data_dir.join("herald.db"))),
            Some(url) => Backend::parse(url).map_err(|message| ConfigError::Invalid {
                key: "storage.url".into(),
                message,
            }),
        }
    }

    /// Where backups are written and listed.
    pub fn backup_dir(&self) -> PathBuf {
        self.backup
            .dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("backups"))
    }

    /// The SQLite file path, when the backend is SQLite.
    pub fn sqlite_path(&self) -> Result<PathBuf, ConfigError> {
        match self.backend()? {
            Backend::Sqlite(p) => Ok(p),
            Backend::Postgres(_) => Err(ConfigError::Invalid {
                key: "storage.url".into(),
                message: "this is a PostgreSQL URL, not SQLite".into(),
            }),
        }
    }

    /// A configuration for tests: everything under `dir`, fast polling, short leases.
    pub fn for_tests(dir: &Path) -> Config {
        let mut c = Config::default();
        c.server.listen = "127.0.0.1:0".into();
        c.server.data_dir = dir.to_path_buf();
        c.server.shutdown_grace = Dur::secs(2);
        c.webhook.allowed_hosts = vec!["127.0.0.1".into(), "localhost".into()];
        c.webhook.timeout = Dur::secs(5);
        c.dispatch.poll = Dur::millis(50);
        c.dispatch.retry_base = Dur::millis(50);
        c.dispatch.retry_cap = Dur::millis(500);
        // Tests send to the same few numbers many times; the defaults have their own test.
        c.limits.recipient.clear();
        c
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut c = self.clone();
        // The storage in force, also when it is the default under `data_dir`.
        c.storage.url = Some(match self.backend() {
            Ok(Backend::Sqlite(p)) => format!("sqlite://{}", p.display()),
            Ok(Backend::Postgres(u)) => redact_url(&u),
            Err(_) => c.storage.url.as_deref().map(redact_url).unwrap_or_default(),
        });
        // A robot's URL is its credential (DingTalk access_token, WeCom key, Slack and
        // Feishu hook paths): show only where it points.
        for p in &mut c.providers {
            if let Some(toml::Value::String(u)) = p.options.get("url") {
                let shown = redact_robot_url(u);
                p.options.insert("url".into(), toml::Value::String(shown));
            }
        }
        toml::to_string_pretty(&c)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Backend {
    /// `sqlite://PATH` or `postgres://…` (also `postgresql://`).
    pub fn parse(url: &str) -> Result<Backend, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Backend::Postgres(url.to_string()));
        }
        match url.strip_prefix("sqlite://") {
            Some(p) if !p.is_empty() => Ok(Backend::Sqlite(PathBuf::from(p))),
            _ => Err(format!(
                "`{}`: use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB",
                redact_url(url)
            )),
        }
    }
}

/// Hides the password of a URL like `postgres://user:pw@host/db`.
/// A URL with its password redacted, in the user part or in libpq's `?password=`.
pub fn redact_url(u: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(u) else {
        return if u.contains("password") {
            "[redacted]".to_string()
        } else {
            u.to_string()
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("redacted"));
    }
    if parsed
        .query_pairs()
        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
    {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "redacted".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_holds_a_password_or_robot_token() {
        let text = "[storage]\nurl = \"postgres://herald:pg-secret-1@db:5432/h?sslmode=require\"\n\
            [[providers]]\nid = \"ops\"\nchannel = \"chat\"\nkind = \"dingtalk\"\n\
            credentials = { secret = \"SECding-secret-2\" }\n\
            options = { url = \"https://oapi.dingtalk.com/robot/send?access_token=tok-secret-3\" }\n";
        let cfg = load_from_str(text, &|_| None).unwrap();
        let dbg = format!("{cfg:?}");
        for secret in ["pg-secret-1", "SECding-secret-2", "tok-secret-3"] {
            assert!(!dbg.contains(secret), "{secret} in {dbg}");
        }
        assert!(dbg.contains("oapi.dingtalk.com"));
        assert_eq!(
            redact_url("postgres://db/h?user=u&password=libpq-secret&sslmode=require"),
            "postgres://db/h?user=u&password=redacted&sslmode=require"
        );
        assert!(!redact_url("postgres://u:p4ss@db/h").contains("p4ss"));
    }

    #[test]
    fn a_node_is_declared_dead_only_after_several_missed_beats() {
        let c = ClusterConfig::default();
        assert!(
            c.dead_after.0 >= 4 * c.heartbeat.0,
            "a slow beat or a busy database must not kill a live node: {c:?}"
        );
        assert!(
            c.dead_after.0 <= std::time::Duration::from_secs(5),
            "DESIGN: 5 s"
        );
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../herald.example.toml");
        let env = |k: &str| match k {
            "BILLING_KEY" => Some("billing-key-0123456789abcdef".to_string()),
            "WEBHOOK_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()),
            _ => None,
        };
        let cfg = load_from_str(text, &env).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.api_keys.len(), 1);
        assert_eq!(cfg.providers[0].id, "signed-hooks");
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(
            Config::default().sqlite_path().unwrap(),
            PathBuf::from("./herald-data/herald.db")
        );
    }

    #[test]
    fn redacted_output_hides_secrets() {
        let text = "[[api_keys]]\nname='a'\nkey='supersecretkey-0123456789'\nrole='admin'\n[storage]\nurl='sqlite://x.db'\n";
        let cfg = load_from_str(text, &|_| None).unwrap();
        let out = cfg.to_redacted_toml();
        assert!(!out.contains("supersecretkey"), "{out}");
        assert!(out.contains("[redacted]"));
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:redacted@h:5432/db"
        );
    }
}
