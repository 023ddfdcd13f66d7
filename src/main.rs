#![forbid(unsafe_code)]
//! The `herald` binary: argument parsing and exit codes. The work is in the library.

use anyhow::{Context, Result};
use clap::Parser;
use herald::cli::{Cli, Command, ConfigCmd};
use herald::config;

/// mimalloc: the dispatcher and the SQLite writer allocate and free many small buffers per
/// delivery, and glibc's allocator was a tenth of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse(); // bad usage exits 2
    herald::tls::init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("herald: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(c) => serve(c.config.as_deref()).await,
        Command::Migrate(c) => {
            let (cfg, _) = config::load(c.config.as_deref())?;
            match cfg.backend()? {
                config::Backend::Sqlite(path) => {
                    let mut conn = rusqlite_open(&path)?;
                    let applied = herald::store::sqlite::migrate(&mut conn)?;
                    herald::cli::out(format!("{}: applied {:?}", path.display(), applied));
                }
                config::Backend::Postgres(url) => {
                    let pool = sqlx::postgres::PgPoolOptions::new()
                        .max_connections(1)
                        .connect(&url)
                        .await
                        .context("cannot reach PostgreSQL")?;
                    let applied = herald::store::postgres::migrate(&pool).await?;
                    herald::cli::out(format!(
                        "{}: applied {:?}",
                        config::redact_url(&url),
                        applied
                    ));
                }
            }
            Ok(())
        }
        Command::Config {
            cmd: ConfigCmd::Check(c),
        } => {
            let (cfg, file) = config::load(c.config.config.as_deref())?;
            herald::app::check_config(&cfg)?;
            if c.ha {
                let found = config::ha::findings(&cfg);
                if c.format == "json" {
                    let errors = found
                        .iter()
                        .filter(|x| x.level == config::ha::Level::Error)
                        .count();
                    herald::cli::out(serde_json::to_string_pretty(&serde_json::json!({
                        "findings": found, "errors": errors, "warnings": found.len() - errors,
                    }))?);
                } else {
                    herald::cli::out(config::ha::text(&found).trim_end());
                }
                if found.iter().any(|x| x.level == config::ha::Level::Error) {
                    std::process::exit(1);
                }
                return Ok(());
            }
            match file {
                Some(f) => herald::cli::out(format!("# configuration {} is valid", f.display())),
                None => herald::cli::out("# no configuration file: built-in defaults"),
            }
            herald::cli::out(cfg.to_redacted_toml().trim_end());
            Ok(())
        }
        Command::Send(a) => herald::cli::client::send(a).await,
        Command::Messages { cmd } => herald::cli::client::messages(cmd).await,
        Command::Dlq { cmd } => herald::cli::client::dlq(cmd).await,
        Command::Providers { cmd } => herald::cli::client::providers(cmd).await,
        Command::Mode { cmd } => herald::cli::client::mode(cmd).await,
        Command::Contacts { cmd } => herald::cli::contacts::run(cmd).await,
        Command::Incidents { cmd } => herald::cli::incidents::run(cmd).await,
        Command::Oncall { cmd } => herald::cli::oncall::run(cmd).await,
        Command::Apply { file, client } => herald::cli::oncall::apply(&file, &client).await,
        Command::Approvals { cmd } => herald::cli::approvals::approvals(cmd).await,
        Command::Audit { cmd } => herald::cli::approvals::audit(cmd).await,
        Command::Backup { cmd } => herald::cli::backup::run(cmd).await,
        Command::Drill { cmd } => herald::drill::run(cmd).await,
        Command::Bench(a) => herald::cli::bench::run(a).await,
        Command::Sink(a) => herald::cli::sink::run(a).await,
        Command::Push {
            cmd: herald::cli::PushCmd::Keygen,
        } => {
            herald::cli::out(herald::cli::push_keygen().trim_end().to_string());
            Ok(())
        }
        Command::Simulate(a) => herald::simulate::run(a).await,
    }
}

fn rusqlite_open(path: &std::path::Path) -> Result<rusqlite::Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        herald::private_fs::dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    herald::private_fs::sqlite_files(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    rusqlite::Connection::open(path).with_context(|| format!("cannot open {}", path.display()))
}

async fn serve(config_path: Option<&std::path::Path>) -> Result<()> {
    let (cfg, file) = config::load(config_path)?;
    herald::app::setup_tracing(&cfg);
    if let Some(f) = &file {
        tracing::info!(config = %f.display(), "configuration loaded");
    }
    let (admin_key, key_file) = herald::api::auth::bootstrap_admin_key(&cfg.server.data_dir)
        .context("cannot prepare the admin key")?;
    if let Some(p) = key_file {
        tracing::info!(path = %p.display(), "bootstrap admin key is in this file (mode 0600)");
    }
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    let server = herald::app::start(cfg, listener, &admin_key).await?;
    let stop = server.stop_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new requests; finishing deliveries in flight");
        stop.cancel();
    });
    server.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
