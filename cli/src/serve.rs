//! `cheops serve`: configuration, start-up and shutdown of a node.

mod config;
mod live_node;
mod logging;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cheops_backends::ShellBackend;
use cheops_replicator::Node;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

pub use config::ServeArgs;

/// How long running work may take to stop after a signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Exit status for an invalid configuration (EX_USAGE).
const EXIT_USAGE: u8 = 64;

pub fn main(args: ServeArgs) -> ExitCode {
    let settings = match args.validate() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("cheops serve: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    logging::init(settings.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: config::Settings) -> Result<(), String> {
    let backend = Arc::new(ShellBackend::new());
    let node = Node::new(settings.node.clone(), backend).map_err(|e| e.to_string())?;
    let api_listener = bind(settings.api_addr, "API").await?;
    let dump_listener = bind(settings.dump_addr, "dump").await?;
    let chephren_listener = bind(settings.chephren_addr, "Chephren").await?;
    info!(
        site = %node.site(),
        api = %settings.api_addr,
        dump = %settings.dump_addr,
        chephren = %settings.chephren_addr,
        "cheops listening"
    );

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let live = Arc::new(live_node::LiveNode(node.clone()));
    let shared: Arc<dyn cheops_api::Node> = live.clone();
    let api = cheops_api::router(Arc::clone(&shared), settings.api.clone());
    let dump = cheops_api::dump_router(shared);
    let chephren = cheops_chephren::router(live, settings.chephren.clone(), shutdown_rx.clone());

    let mut tasks = vec![
        (
            "api",
            tokio::spawn(serve_http(api_listener, api, shutdown_rx.clone())),
        ),
        (
            "dump",
            tokio::spawn(serve_http(dump_listener, dump, shutdown_rx.clone())),
        ),
        (
            "chephren",
            tokio::spawn(serve_http(chephren_listener, chephren, shutdown_rx.clone())),
        ),
    ];
    let start = {
        let node = node.clone();
        let shutdown = shutdown_rx.clone();
        tokio::spawn(async move { node.start(shutdown).await })
    };

    wait_for_signal().await;
    info!("shutting down");
    let _ = shutdown_tx.send(true);
    if let Ok(background) = start.await {
        tasks.extend(background);
    }
    for (name, task) in tasks {
        match tokio::time::timeout(DRAIN_DEADLINE, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(task = name, error = %e, "task ended badly"),
            Err(_) => warn!(task = name, "task did not stop in time"),
        }
    }
    Ok(())
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for the {what} port: {e}"))
}

async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
    {
        error!(error = %e, "HTTP server failed");
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
