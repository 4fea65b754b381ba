//! `paxosd`: one replica daemon. Flags and logging only; the work is in `paxos::node`.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 2 for bad flags or config,
//! 1 for any other failure (store unusable, port taken, fatal storage error).

use anyhow::Context;
use clap::Parser;
use paxos::config::Config;
use paxos::core::{Slot, Uid};
use paxos::node::{shutdown, systemd, Node, NodeOptions};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::fmt::{format, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "paxosd",
    version,
    about = "A paxos replica daemon: agrees on the chat log with its peers and keeps it on disk",
    after_help = "Example:\n  paxosd --config config.toml --uid 1\n  paxosd --config config.toml --uid 0 --skip-slots 1,2   # fresh store only"
)]
struct Args {
    /// The cluster's config file.
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
    /// This replica's uid (its index in the config's [[replica]] list).
    #[arg(long)]
    uid: Uid,
    /// Slots the initial leader never proposes in, e.g. 1,2 (uid 0, fresh store only).
    #[arg(long, value_delimiter = ',')]
    skip_slots: Vec<Slot>,
    /// Store directory (default: <data_dir>/node-<uid> from the config).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Threads that run the sockets, TLS and the core loop: 1 (the default) runs them all
    /// on one thread, with no hand-offs between threads on the commit path (the disk
    /// flusher, the segment writer and store reads have threads of their own either way);
    /// N > 1 spreads them over N threads; 0 uses one per core. On a 2-core machine
    /// running 3 replicas and the clients, 1 thread commits 1.2-1.4x more writes per
    /// second than one per core (README, "Figures").
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=256))]
    runtime_threads: u16,
}

/// Keeps the non-blocking log file writer alive until exit.
struct Logging {
    _file_guard: Option<tracing_appender::non_blocking::WorkerGuard>,
}

fn init_logging(config: &Config, uid: Uid) -> Logging {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = systemd::under_journald();
    // Under journald: no colours, no timestamps (the journal adds its own).
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(!journald && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let stderr_layer = if journald {
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_target(false)
            .with_ansi(false);
        stderr_layer.event_format(JournalPriority(format)).boxed()
    } else {
        stderr_layer.boxed()
    };
    let log_dir = config.effective_log_dir();
    let (file_layer, guard) = match std::fs::create_dir_all(&log_dir) {
        Ok(()) => {
            let appender = tracing_appender::rolling::daily(&log_dir, format!("paxosd-{uid}.log"));
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(filter());
            (Some(layer), Some(guard))
        }
        Err(e) => {
            eprintln!(
                "paxosd: cannot create log_dir {}: {e}; logging to stderr only",
                log_dir.display()
            );
            (None, None)
        }
    };
    tracing_subscriber::registry()
        .with(stderr_layer.with_filter(filter()))
        .with(file_layer)
        .init();
    Logging { _file_guard: guard }
}

/// Prefixes each line with its syslog priority (`<3>` error, `<4>` warning, `<6>` info,
/// `<7>` debug), which journald reads and strips, so `journalctl -p warning` works.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

fn main() -> ExitCode {
    let allocator_tuned = paxos::node::allocator::tune();
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paxosd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = config.check_uid(args.uid) {
        eprintln!("paxosd: {e}");
        return ExitCode::from(2);
    }
    let _logging = init_logging(&config, args.uid);
    if !allocator_tuned {
        tracing::warn!(
            "malloc refused the mmap or trim threshold; its default stands for that one"
        );
    }
    let options = NodeOptions {
        data_dir: args
            .data_dir
            .clone()
            .unwrap_or_else(|| config.node_data_dir(args.uid)),
        config,
        uid: args.uid,
        skip_slots: args.skip_slots.iter().copied().collect::<BTreeSet<_>>(),
    };
    match run(options, usize::from(args.runtime_threads)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A paxos::Error already names its cause; anyhow's `{:#}` would repeat it.
            let (message, config_error) = match e.downcast_ref::<paxos::Error>() {
                Some(pe) => (pe.to_string(), matches!(pe, paxos::Error::Config { .. })),
                None => (format!("{e:#}"), false),
            };
            tracing::error!(error = %message, "paxosd failed");
            eprintln!("paxosd: {message}");
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

/// Runs the replica on a tokio runtime of `threads` threads (see `Args::runtime_threads`).
fn run(options: NodeOptions, threads: usize) -> anyhow::Result<()> {
    let runtime = match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown::on_signals()?;
        let node = Node::open(options).await?;
        systemd::notify("READY=1");
        node.run(shutdown).await?;
        Ok(())
    })
}
