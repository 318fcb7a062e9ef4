//! `cheops serve`: configuration, start-up and shutdown of a node.

mod config;
mod descriptors;
mod listener;
mod logging;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cheops_api::auth::{guarded, Access};
use cheops_backends::{Backends, HttpBackend, RedisBackend, ShellBackend};
use cheops_replicator::{ClientOptions, Ending, Node, NodeSeam, Supervisor};
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use config::Exposure;
pub use config::ServeArgs;

/// How long running work may take to stop after a signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// How long running operations get to end after a signal: less than
/// [`DRAIN_DEADLINE`], so that those still running are stopped, and their
/// stop waited for, before the deadline.
pub const OPERATIONS_DRAIN: Duration = Duration::from_secs(7);

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.worker_threads)
        .enable_all()
        .build();
    let runtime = match runtime {
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

async fn run(mut settings: config::Settings) -> Result<(), String> {
    let (open_files, problem) = descriptors::raise_limit();
    if let Some(message) = problem {
        warn!("{message}");
    }
    let listeners = 2 + usize::from(settings.dump_addr.is_some());
    let reserved = descriptors::reserved(settings.node.concurrency);
    let per_listener = descriptors::connections_per_listener(
        settings.limits.max_connections,
        listeners,
        open_files,
        reserved,
    );
    if per_listener < settings.limits.max_connections {
        warn!(
            open_files = ?open_files,
            max_connections = per_listener,
            "the open files limit leaves room for fewer connections than --max-connections: raise LimitNOFILE"
        );
        settings.limits.max_connections = per_listener;
    }
    let backend = Arc::new(backends(&settings.commands, &settings.node.client)?);
    let node = Node::new(settings.node.clone(), backend).map_err(|e| e.to_string())?;
    let api_listener = bind(settings.api_addr, "API").await?;
    let dump_listener = match settings.dump_addr {
        Some(addr) => Some(bind(addr, "dump").await?),
        None => None,
    };
    let chephren_listener = bind(settings.chephren_addr, "Chephren").await?;
    info!(
        site = %node.site(),
        api = %settings.api_addr,
        dump = %settings.dump_addr.map_or("off".to_owned(), |addr| addr.to_string()),
        chephren = %settings.chephren_addr,
        https = settings.tls.is_some(),
        "cheops listening"
    );
    match settings.exposure {
        Exposure::Tokens => info!("bearer tokens required (/health and /openapi.yml stay open)"),
        Exposure::LoopbackOnly => warn!(
            address = %settings.api_addr.ip(),
            "no token configured: listening on loopback only; give an operator token (--token-file or CHEOPS_TOKEN) to listen elsewhere"
        ),
        Exposure::Insecure => {
            warn!("--insecure: no token required, anyone who reaches these ports can run commands")
        }
    }

    let supervisor = Supervisor::new(node.tasks().clone());
    let spawner = supervisor.spawner();
    // The HTTP layers hold the node itself, through its seam.
    let seam: Arc<dyn NodeSeam> = Arc::new(node.clone());
    let api = cheops_api::router(Arc::clone(&seam), settings.api.clone());
    let tokens = Arc::clone(&settings.tokens);
    let read_only = |api| guarded(api, tokens, Access::Read);
    let chephren = cheops_chephren::router(
        Arc::clone(&seam),
        settings.chephren.clone(),
        spawner.shutdown(),
        read_only,
    );
    let mut listeners = vec![
        ("api", api_listener, api),
        ("chephren", chephren_listener, chephren),
    ];
    if let Some(listener) = dump_listener {
        let dump = cheops_api::dump_router(seam, Arc::clone(&settings.tokens));
        listeners.push(("dump", listener, dump));
    }
    for (name, listener, router) in listeners {
        let stop = spawner.shutdown();
        let tls = settings.tls.clone();
        let limits = settings.limits;
        spawner.spawn(name, true, |_| {
            listener::serve(listener, router, tls, limits, stop)
        });
    }
    spawner.spawn_worker("start", true, node.starter(spawner.clone()));
    if let Some(path) = settings.hooks_file.clone() {
        let (node, stop) = (node.clone(), spawner.shutdown());
        spawner.spawn("hooks-file", false, |_| {
            reload_hooks_on_hangup(node, path, stop)
        });
    }
    drop(spawner);

    match supervisor.run(wait_for_signal(), DRAIN_DEADLINE).await {
        Ending::Signalled => Ok(()),
        Ending::Abandoned(tasks) => {
            warn!(?tasks, "stopped without waiting for every task");
            Ok(())
        }
        Ending::Died(task) => Err(format!("the {task} task died; exiting")),
    }
}

/// Reads the hooks file again at each SIGHUP: a file that reads replaces
/// the hooks; one that does not is logged and changes nothing.
async fn reload_hooks_on_hangup(
    node: Node,
    path: std::path::PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            warn!(%error, "cannot catch SIGHUP: the hooks file is read at start only");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        match cheops_replicator::load_hooks(&path) {
            Ok(hooks) => {
                info!(hooks = hooks.len(), "hooks file read again");
                node.set_hooks(hooks);
            }
            Err(error) => error!(%error, "hooks file not read again; the hooks stay as they were"),
        }
    }
}

/// The backends this site serves, as the operator configured them.
fn backends(
    commands: &config::CommandSettings,
    client: &ClientOptions,
) -> Result<Backends, String> {
    let shell = commands.shell.then(|| {
        let mut shell = ShellBackend::new()
            .with_timeout(commands.timeout)
            .with_output_limit(commands.output_limit);
        for (name, value) in &commands.env {
            shell = shell.with_env(name, value);
        }
        Arc::new(shell)
    });
    let http = match &commands.http {
        Some(url) => {
            let client = client
                .builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("cannot set up HTTP: {e}"))?;
            let backend = HttpBackend::new(url, client, commands.timeout, commands.output_limit)
                .map_err(|e| format!("--http-backend: {e}"))?;
            Some(backend)
        }
        None => None,
    };
    let redis = match &commands.redis {
        Some(url) => Some(
            RedisBackend::new(url, commands.timeout, commands.output_limit)
                .map_err(|e| format!("--redis-backend: {e}"))?,
        ),
        None => None,
    };
    info!(
        shell = shell.is_some(),
        http = http.is_some(),
        redis = redis.is_some(),
        "backends"
    );
    Ok(Backends { shell, http, redis })
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for the {what} port: {e}"))
}

async fn wait_for_signal() {
    wait_for_any_signal().await;
    info!("shutting down");
}

async fn wait_for_any_signal() {
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
