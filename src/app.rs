//! Wiring: storage, providers, API and dispatcher, with one shutdown token.

use crate::api::auth::Auth;
use crate::api::{AppState, router};
use crate::config::Config;
use crate::core::ssrf::HostPolicy;
use crate::core::types::{new_id, now_millis};
use crate::metrics::Metrics;
use crate::providers::Registry;
use crate::store::sqlite::SqliteStore;
use crate::store::{Inbox, Operations, Queue, Retention, Store};
use crate::worker::Dispatcher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("providers: {0}")]
    Providers(String),
    #[error("templates: {0}")]
    Templates(String),
    #[error("spool: {0}")]
    Spool(std::io::Error),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("telemetry: {0}")]
    Telemetry(String),
}

/// A running gateway.
pub struct Server {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl Server {
    /// Stops accepting, lets calls in flight finish within the grace period, releases the
    /// remaining leases, and returns when all is done.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }

    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until the server has stopped (after its token is cancelled).
    pub async fn wait(self) {
        let _ = self.handle.await;
    }
}

/// Every check `serve` makes of a configuration before it touches storage or the network:
/// the file's own rules, the templates, and each provider's kind, credentials and options.
/// `herald config check` runs exactly this.
pub fn check_config(cfg: &Config) -> Result<(), StartError> {
    cfg.validate()?;
    cfg.backend()?;
    let templates =
        Arc::new(crate::templates::Templates::new(&cfg.templates).map_err(StartError::Templates)?);
    Registry::from_config(cfg, None, None, templates).map_err(StartError::Providers)?;
    Ok(())
}

/// Starts the gateway on `listener`.
pub async fn start(
    cfg: Config,
    listener: TcpListener,
    admin_key: &str,
) -> Result<Server, StartError> {
    // The rest of check_config (templates, providers) happens below as they are built.
    cfg.validate()?;
    let cfg = Arc::new(cfg);
    let addr = listener.local_addr().map_err(StartError::Listen)?;
    let (store, spool): (Arc<dyn Store>, Option<Arc<crate::spool::Spool>>) = match cfg.backend()? {
        crate::config::Backend::Sqlite(path) => (SqliteStore::open(&path, true)?, None),
        crate::config::Backend::Postgres(url) => {
            let store: Arc<dyn Store> =
                crate::store::postgres::PgStore::open(&url, Duration::from_secs(30)).await?;
            let spool =
                crate::spool::Spool::open(&cfg.server.data_dir).map_err(StartError::Spool)?;
            // A restart replays the spool before serving.
            if spool.depth() > 0 {
                let n = spool.replay(store.as_ref()).await?;
                tracing::info!(replayed = n, "spooled messages moved into storage");
            }
            (store, Some(spool))
        }
    };
    let recovered = store.recover_leases(now_millis()).await?;
    if recovered > 0 {
        tracing::info!(
            recovered,
            "leases of the previous run released; those deliveries are retried"
        );
    }
    let metrics = Arc::new(Metrics::new());
    let (inbox_events, _) = broadcast::channel(1024);
    let templates =
        Arc::new(crate::templates::Templates::new(&cfg.templates).map_err(StartError::Templates)?);
    let providers = Arc::new(
        Registry::from_config(
            &cfg,
            Some((store.clone() as Arc<dyn Inbox>, inbox_events.clone())),
            Some(store.clone() as Arc<dyn crate::store::Contacts>),
            templates.clone(),
        )
        .map_err(StartError::Providers)?,
    );
    let wake = Arc::new(Notify::new());
    providers.set_switches(store.provider_switches().await?);
    let mode = Arc::new(std::sync::RwLock::new(
        store.mode().await?.unwrap_or_else(default_mode),
    ));
    let queue_depth = Arc::new(std::sync::atomic::AtomicU64::new(
        store.queue_depth().await?,
    ));
    let workers_beat = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let node_id = new_id("node");
    // Spans are flushed after the workers have stopped (their last outcomes included).
    let trace_stop = CancellationToken::new();
    let (tracer, exporter) = crate::telemetry::Tracer::start(
        &cfg.telemetry,
        &node_id,
        metrics.clone(),
        trace_stop.clone(),
    )
    .map_err(StartError::Telemetry)?;
    let state = AppState {
        cfg: cfg.clone(),
        store: crate::store::Domains::of(&store),
        auth: Arc::new(Auth::new(&cfg, admin_key, store.clone(), store.clone())),
        metrics: metrics.clone(),
        hosts: Arc::new(HostPolicy::new(&cfg.webhook.allowed_hosts)),
        channels: Arc::new(providers.channels()),
        templates,
        chat_targets: Arc::new(providers.chat_targets()),
        providers: providers.clone(),
        wake: wake.clone(),
        inbox_events,
        keypresses: broadcast::channel(1024).0,
        routes: Arc::new(cfg.compiled_routes()?),
        heartbeats: Arc::new(cfg.compiled_heartbeats()?),
        pager_wake: Arc::new(Notify::new()),
        escalator_wake: Arc::new(Notify::new()),
        reply_answers: Default::default(),
        workers_beat: workers_beat.clone(),
        shutdown: CancellationToken::new(),
        mode: mode.clone(),
        queue_depth: queue_depth.clone(),
        node_id: node_id.clone(),
        tracer: tracer.clone(),
        spool: spool.clone(),
        status: Arc::new(crate::status::StatusPage::new(
            cfg.status
                .snapshot_file
                .clone()
                .unwrap_or_else(|| cfg.server.data_dir.join("status-snapshot.json")),
        )),
    };
    let stop = state.shutdown.clone();
    let dispatcher = cfg.dispatch.enabled.then(|| {
        Arc::new(Dispatcher {
            queue: store.clone(),
            cluster: store.clone(),
            providers: providers.clone(),
            metrics: metrics.clone(),
            cfg: cfg.dispatch.clone(),
            node_id: node_id.clone(),
            wake,
            grace: cfg.server.shutdown_grace.0,
            lanes: Default::default(),
            endpoints: Default::default(),
            beat: workers_beat.clone(),
            completer: crate::worker::completer::Completer::start(store.clone()),
            tracer,
        })
    });
    // A node that does not dispatch does not page either (pages wait for one that does).
    let pager = cfg.dispatch.enabled.then(|| state.clone());
    let heartbeat_checker = state.clone();
    let status_page = state.cfg.status.enabled.then(|| state.clone());
    // Spans name the path only: query strings may carry receipt tokens.
    let app = router(state).layer(
        tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
        }),
    );
    let stop2 = stop.clone();
    let grace = cfg.server.shutdown_grace.0;
    let limits = crate::api::serve::Limits {
        header_read_timeout: cfg.server.header_read_timeout.0,
        max_connections: cfg.server.max_connections,
    };
    let receipt_poll = cfg.dispatch.receipt_poll.0;
    let cluster = cfg.cluster.clone();
    let retention_cfg = cfg.retention.clone();
    let store2 = store.clone();
    let schedule = crate::backup::schedule::Schedule::from_config(
        &cfg.backup,
        cfg.backend()?,
        cfg.backup_dir(),
    );
    let handle = tokio::spawn(async move {
        // On stop, the API stops accepting and the workers stop claiming at the same moment;
        // both get the grace period to finish what they started.
        let worker = dispatcher.map(|d| tokio::spawn(d.run(stop2.clone())));
        let maintenance = tokio::spawn(maintenance(store2.clone(), stop2.clone()));
        let escalator = pager
            .clone()
            .map(|p| tokio::spawn(crate::worker::escalator::run(p)));
        let listener_keys = pager
            .clone()
            .map(|p| tokio::spawn(crate::worker::replies::keypresses(p)));
        let pager = pager.map(|p| tokio::spawn(crate::worker::pager::run(p)));
        let heartbeats = tokio::spawn(crate::worker::heartbeats::run(heartbeat_checker));
        let status_page = status_page.map(|s| tokio::spawn(crate::status::run(s, stop2.clone())));
        let refresher = tokio::spawn(refresh(
            store2.clone(),
            providers.clone(),
            mode,
            queue_depth,
            stop2.clone(),
        ));
        let pollers = tokio::spawn(crate::worker::receipts::poll_loop(
            providers.pollers.clone(),
            store2.clone(),
            receipt_poll,
            node_id.clone(),
            stop2.clone(),
        ));
        let replayer = tokio::spawn(replay_spool(spool, store2.clone(), stop2.clone()));
        let backups = schedule.map(|s| {
            tokio::spawn(crate::backup::schedule::run(
                s,
                store2.clone(),
                node_id.clone(),
                metrics.clone(),
                stop2.clone(),
            ))
        });
        let retention = tokio::spawn(crate::worker::retention::run(
            store2.clone(),
            retention_cfg,
            node_id.clone(),
            metrics.clone(),
            stop2.clone(),
        ));
        let node = tokio::spawn(crate::worker::nodes::run(
            store2.clone(),
            node_id.clone(),
            addr.to_string(),
            cluster,
            stop2.clone(),
        ));
        let server = tokio::spawn(crate::api::serve::serve(
            listener,
            app,
            limits,
            stop2.clone(),
        ));
        let abort = server.abort_handle();
        tokio::select! {
            r = server => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            }
            _ = async { stop2.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("requests still open after the grace period; closing them");
                abort.abort();
            }
        }
        workers_beat.store(0, Ordering::Relaxed);
        if let Some(w) = worker
            && let Err(e) = w.await
            && e.is_panic()
        {
            tracing::error!("the dispatcher panicked; its leases expire and are taken over");
        }
        maintenance.abort();
        for p in [pager, escalator, listener_keys, status_page]
            .into_iter()
            .flatten()
        {
            p.abort();
        }
        heartbeats.abort();
        refresher.abort();
        pollers.abort();
        replayer.abort();
        retention.abort();
        if let Some(b) = backups {
            b.abort();
        }
        trace_stop.cancel();
        if let Some(e) = exporter {
            // The last export is bounded by its own timeout; past that it is given up.
            let _ = tokio::time::timeout(Duration::from_secs(15), e).await;
        }
        let _ = node.await;
        tracing::info!("stopped");
    });
    tracing::info!(%addr, "Herald listening");
    Ok(Server {
        addr,
        store,
        stop,
        handle,
    })
}

/// Moves spooled messages into storage once it answers again.
async fn replay_spool<S: Queue + Operations + ?Sized>(
    spool: Option<Arc<crate::spool::Spool>>,
    store: Arc<S>,
    stop: CancellationToken,
) {
    let Some(spool) = spool else { return };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if spool.depth() == 0 || store.ping().await.is_err() {
            continue;
        }
        match spool.replay(store.as_ref()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                replayed = n,
                "storage is back: spooled messages moved into it"
            ),
            Err(e) => tracing::warn!(error = %e, "spool replay interrupted; will try again"),
        }
    }
}

fn default_mode() -> crate::store::ModeRecord {
    crate::store::ModeRecord {
        mode: "normal".into(),
        reason: None,
        actor: "default".into(),
        since: now_millis(),
    }
}

/// Keeps what operators switch (mode, providers) and the queue depth current: switches may be
/// made on another node, and the depth decides load shedding.
async fn refresh<S: Queue + Operations + ?Sized>(
    store: Arc<S>,
    providers: Arc<Registry>,
    mode: Arc<std::sync::RwLock<crate::store::ModeRecord>>,
    depth: Arc<std::sync::atomic::AtomicU64>,
    stop: CancellationToken,
) {
    let mut tick = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        tick += 1;
        if let Ok(d) = store.queue_depth().await {
            depth.store(d, Ordering::Relaxed);
        }
        if tick.is_multiple_of(2) {
            // Entries committed on PostgreSQL take their place in the audit chain here.
            if let Err(e) = store.audit_seal().await {
                tracing::debug!(error = %e, "audit entries not sealed yet");
            }
            // Switches past their `until` end here (one node ends each, audited `system`).
            match store.expire_switches(now_millis()).await {
                Ok(ended) => {
                    for p in ended {
                        tracing::warn!(provider = %p, "provider switch expired: enabled again");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "expired switches not checked"),
            }
            if let Ok(sw) = store.provider_switches().await {
                providers.set_switches(sw);
            }
            if let Ok(Some(m)) = store.mode().await
                && let Ok(mut cur) = mode.write()
            {
                *cur = m;
            }
        }
    }
}

/// Periodic housekeeping: forget idempotency keys after 24 h.
async fn maintenance(store: Arc<dyn Retention>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
        match store
            .purge_idempotency(now_millis() - 24 * 3600 * 1000)
            .await
        {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "idempotency keys expired"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
        }
    }
}

/// Sets up logging once: `RUST_LOG` wins over the configured level.
pub fn setup_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{},tower_http=warn,hyper=warn", cfg.log.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // No colours: every control character in a line is escaped (values from outside cannot
    // forge log lines or repaint a terminal), the formatter's own escape codes included.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::log_escape::EscapedStderr)
        .with_ansi(false);
    let _ = if cfg.log.format == "json" {
        // One object per line: `timestamp`, `level`, `target`, the event's fields at the top
        // (`message`, `provider`, `error` …), and the fields of the spans it happened in
        // (`span`: the innermost; `spans`: all), e.g. a delivery's `message_id`,
        // `delivery_id` and `channel`. Documented in docs/operations.md ("Logs").
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
