//! `paxosctl`: the one tool a person uses with a paxos cluster: submit, chat, watch,
//! inspect, benchmark, run a local cluster. Argument parsing and printing only; the
//! logic lives in `paxos::client`.

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use paxos::client::bench::{plot_svg, run_bench, BenchOptions};
use paxos::client::local::{auto_client, LocalCluster, LocalClusterOptions, STOP_GRACE};
use paxos::client::log::{
    chat_line, dump_log, entry_json, entry_plain, read_offline_log, LogFollower, FOLLOW_WAIT_MS,
};
use paxos::client::status::{cluster_status, status_json, status_table};
use paxos::client::{select_config, Client, ClientError, ClientOptions};
use paxos::config::{Config, BASE_PORT_DEFAULT, TIMEOUT_MS_DEFAULT};
use paxos::core::{Slot, Uid};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "paxosctl",
    version,
    about = "Talk to a paxos chat-log cluster: submit, chat, watch, inspect, benchmark, run one locally",
    after_help = "Examples:\n  paxosctl run -f 1 --clients 3          # a local cluster with 3 automatic clients\n  paxosctl submit \"hello\"                 # prints the slot\n  paxosctl status                          # every replica's role, ballot, decided prefix\n  paxosctl --config /etc/paxos/config.toml watch --json\n\nWithout --config, ./config.toml is used if it exists, else the built-in default\n(3 replicas on 127.0.0.1:7101-7103)."
)]
struct Cli {
    /// Cluster configuration file [default: ./config.toml if present, else built-in]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Machine-readable output: one JSON object a line
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Append a message to the chat log; prints its slot once chosen
    #[command(
        after_help = "Examples:\n  paxosctl submit \"hello\"            # prints e.g. 17\n  paxosctl submit --json \"hi\"        # {\"id\":\"<client_id>:<seq>\",\"slot\":17}\n\nExits non-zero, saying which replicas answered what, if no quorum commits the\nmessage within 10 s."
    )]
    Submit {
        /// The message
        #[arg(allow_hyphen_values = true)]
        body: String,
        /// Give up after this many seconds
        #[arg(long, value_name = "S", default_value_t = 10.0)]
        timeout: f64,
    },
    /// Print a replica's chat log, over the network or from a stopped replica's store
    #[command(
        after_help = "Examples:\n  paxosctl dump-log --uid 2\n  paxosctl dump-log --uid 0 --json     # {\"slot\":N,\"kind\":\"msg\"|\"noop\"|\"dup\",\"id\":\"..\",\"body\":\"..\"}\n  paxosctl dump-log --data-dir data/node-1   # offline; the replica must be stopped"
    )]
    DumpLog {
        /// Ask replica UID over the network
        #[arg(long, value_name = "UID", required_unless_present = "data_dir")]
        uid: Option<Uid>,
        /// Read a stopped replica's store directory (e.g. data/node-0)
        #[arg(long, value_name = "DIR", conflicts_with = "uid")]
        data_dir: Option<PathBuf>,
    },
    /// Every replica's role, ballot, decided prefix, lag, reachability
    #[command(
        after_help = "Examples:\n  paxosctl status\n  paxosctl status --json   # {\"uid\":0,\"reachable\":true,\"role\":\"leader\",\"ballot\":[0,0],\"decided\":42}\n\nLAG is how many slots a replica's decided prefix is behind the most advanced\nreachable replica."
    )]
    Status,
    /// Write a config for a local cluster of 2f+1 replicas
    #[command(
        after_help = "Examples:\n  paxosctl gen-config -f 1 -o config.toml\n  paxosctl gen-config -f 2 --loss 0.1 --timeout-ms 300 --base-port 9001"
    )]
    GenConfig {
        /// Failures tolerated (2f+1 replicas)
        #[arg(short = 'f', long = "failures", value_name = "F")]
        f: usize,
        /// Probability of dropping each peer message (testing)
        #[arg(long, value_name = "P", default_value_t = 0.0)]
        loss: f64,
        /// Failure-detection timeout
        #[arg(long, value_name = "T", default_value_t = TIMEOUT_MS_DEFAULT)]
        timeout_ms: u64,
        /// Port of uid 0 (uid i listens on base + i)
        #[arg(long, value_name = "P", default_value_t = BASE_PORT_DEFAULT)]
        base_port: u16,
        /// Write here instead of stdout, and the certificates under tls/ beside it
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// No [tls] section and no certificates: plaintext, loopback addresses only
        #[arg(long)]
        no_tls: bool,
    },
    /// (Re)issue the TLS certificates of an existing config
    #[command(
        after_help = "Examples:\n  paxosctl --config dir/config.toml certs            # CA (kept if present), every replica, client\n  paxosctl --config dir/config.toml certs --uid 1    # rotate replica 1's certificate\n  paxosctl --config /etc/paxos/config.toml certs --dir /etc/paxos/tls\n\nA config without [tls] gets one (files under tls/ beside it). The CA key\n(ca.key beside ca.pem) is kept and reused unless --new-ca; a new CA reissues\nevery certificate. Keys are written mode 0600. Restart a replica (one at a time)\nfor it to use its new certificate."
    )]
    Certs {
        /// Only this replica's certificate (repeatable)
        #[arg(long, value_name = "UID")]
        uid: Vec<Uid>,
        /// With --uid: reissue the client certificate too
        #[arg(long)]
        client: bool,
        /// Make a new CA (every certificate is reissued)
        #[arg(long)]
        new_ca: bool,
        /// Write ca.pem, replica-<uid>.pem/.key, client.pem/.key into DIR instead of the config's paths
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Issue certificates that are already expired (to test expiry handling)
        #[arg(long, hide = true)]
        expired: bool,
    },
    /// Run a local cluster of 2f+1 paxosd with automatic clients until Ctrl-C
    #[command(
        after_help = "Examples:\n  paxosctl run -f 1 --clients 3\n  paxosctl run -f 2 --clients 5 --loss 0.2 --skip-slots 1,2 --duration 10\n\nWrites config.toml, the stores and one paxosd-<uid>.log per replica in the run\ndirectory (--data-dir, or a fresh one under the temp dir) and prints where. Ctrl-C\nstops every replica (SIGTERM, then SIGKILL after 5 s)."
    )]
    Run {
        /// Failures tolerated (2f+1 replicas)
        #[arg(short = 'f', long = "failures", value_name = "F")]
        f: usize,
        /// Automatic clients submitting random messages
        #[arg(long, value_name = "N", default_value_t = 1)]
        clients: usize,
        /// Probability of dropping each peer message
        #[arg(long, value_name = "P", default_value_t = 0.0)]
        loss: f64,
        /// Failure-detection timeout
        #[arg(long, value_name = "T", default_value_t = TIMEOUT_MS_DEFAULT)]
        timeout_ms: u64,
        /// Slots uid 0 never proposes in (filled with no-ops by a later leader)
        #[arg(long, value_name = "SLOTS", value_delimiter = ',')]
        skip_slots: Vec<Slot>,
        /// Port of uid 0 [default: 7101 if free, else a free range]
        #[arg(long, value_name = "P")]
        base_port: Option<u16>,
        /// Run directory [default: a fresh one under the temp dir]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Stop by itself after S seconds
        #[arg(long, value_name = "S")]
        duration: Option<f64>,
        /// Pause of each client between messages
        #[arg(long, value_name = "MS", default_value_t = 0)]
        interval_ms: u64,
    },
    /// Type lines, see the room
    #[command(
        after_help = "Examples:\n  paxosctl chat --name alice\n  echo 'hello' | paxosctl chat\n\nEach line is sent as \"NAME: line\"; every committed message is shown as\n\"[slot] body\". When no quorum answers, the line is kept and re-sent (with the\nsame request id, so it lands once)."
    )]
    Chat {
        /// Shown before each line [default: $USER, else anon]
        #[arg(long)]
        name: Option<String>,
        /// Messages of history shown on start
        #[arg(long, value_name = "N", default_value_t = 20)]
        history: u64,
    },
    /// Follow the chat log as it is decided
    #[command(
        after_help = "Examples:\n  paxosctl watch\n  paxosctl watch --from 100 --json\n\nReads from any reachable replica and moves on when one fails, without gaps or\nrepeats. Plain output shows messages as \"[slot] body\"; --json shows every slot\n(no-ops and duplicates too) like dump-log --json."
    )]
    Watch {
        /// First slot to show
        #[arg(long, value_name = "SLOT", default_value_t = 0)]
        from: Slot,
    },
    /// Load the cluster and report throughput and latency percentiles
    #[command(
        after_help = "Examples:\n  paxosctl bench --clients 16 --duration 10 --size 100\n  paxosctl bench --clients 64 --duration 30 --size 1000 --plot bench.svg\n\nProgress goes to stderr; stdout gets one line:\n{\"ops_per_s\":..,\"p50_ms\":..,\"p90_ms\":..,\"p99_ms\":..,\"max_ms\":..,\"errors\":..}"
    )]
    Bench {
        /// Concurrent clients, each with one request in flight
        #[arg(long, value_name = "N", default_value_t = 8)]
        clients: usize,
        /// Seconds to run
        #[arg(long, value_name = "S", default_value_t = 10.0)]
        duration: f64,
        /// Message size in bytes
        #[arg(long, value_name = "B", default_value_t = 100)]
        size: usize,
        /// Write an SVG of throughput over time and the latency CDF
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
    },
    /// Back up the chat log to a file, restore a new cluster's store from one, inspect one
    #[command(subcommand)]
    Snapshot(paxos::client::snapshot::SnapshotCommand),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  paxosctl completions bash > /etc/bash_completion.d/paxosctl\n  paxosctl completions zsh > ~/.zfunc/_paxosctl"
    )]
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("paxosctl: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("paxosctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `DIR/tls` for a config written to `DIR/config.toml`.
fn tls_dir(config_path: &Path) -> PathBuf {
    config_path.parent().unwrap_or(Path::new("")).join("tls")
}

fn load_config(cli: &Cli) -> Result<Config> {
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let (config, source) = select_config(cli.config.as_deref(), &cwd)?;
    tracing::debug!(%source, "config");
    Ok(config)
}

/// Writes one line to stdout (an error, e.g. a closed pipe, stops the command).
fn out(line: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let json = cli.json;
    match &cli.command {
        Command::Submit { body, timeout } => {
            let config = load_config(&cli)?;
            let mut options = ClientOptions::from_config(&config);
            options.deadline = seconds(*timeout, "--timeout")?;
            let mut client = Client::with_options(config, options);
            let (id, slot) = client.submit(body).await?;
            if json {
                out(&serde_json::json!({ "id": id.to_string(), "slot": slot }).to_string())?;
            } else {
                out(&slot.to_string())?;
            }
        }
        Command::DumpLog { uid, data_dir } => match (uid, data_dir) {
            (_, Some(dir)) => {
                let (meta, log) = read_offline_log(dir)?;
                eprintln!("{}: {meta}, {} applied slots", dir.display(), log.len());
                for entry in &log {
                    out(&if json {
                        entry_json(entry)
                    } else {
                        entry_plain(entry)
                    })?;
                }
            }
            (Some(uid), None) => {
                let config = load_config(&cli)?;
                if *uid as usize >= config.replicas() {
                    bail!(
                        "--uid {uid}: the config has {} replicas (uids 0..{})",
                        config.replicas(),
                        config.replicas()
                    );
                }
                let mut client = Client::new(config);
                let mut failed = None;
                dump_log(&mut client, *uid, |entry| {
                    if failed.is_none() {
                        let line = if json {
                            entry_json(entry)
                        } else {
                            entry_plain(entry)
                        };
                        failed = out(&line).err();
                    }
                })
                .await?;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            (None, None) => bail!("give --uid N or --data-dir DIR"),
        },
        Command::Snapshot(command) => {
            let config = match command.needs_config() {
                true => Some(load_config(&cli)?),
                false => None,
            };
            paxos::client::snapshot::run(command, config, json).await?;
        }
        Command::Status => {
            let config = load_config(&cli)?;
            let views = cluster_status(&config).await;
            if json {
                for view in &views {
                    out(&status_json(view))?;
                }
            } else {
                print!("{}", status_table(&views));
            }
            if views.iter().all(|v| v.report.is_err()) {
                eprintln!("paxosctl: no replica is reachable");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::GenConfig {
            f,
            loss,
            timeout_ms,
            base_port,
            output,
            no_tls,
        } => {
            let mut config = Config::generate(*f, *loss, *timeout_ms, *base_port);
            config.validate()?;
            match output {
                Some(path) => {
                    if !*no_tls {
                        let written =
                            paxos::transport::certs::setup_new_cluster(&mut config, path)?;
                        eprintln!(
                            "wrote {} TLS files under {}",
                            written.len(),
                            tls_dir(path).display()
                        );
                    }
                    std::fs::write(path, config.to_toml_string())
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => {
                    if !*no_tls {
                        config.tls = Some(Default::default());
                        eprintln!("paxosctl: certificates are not written to stdout: save the config, then run `paxosctl --config FILE certs`");
                    }
                    print!("{}", config.to_toml_string());
                }
            }
        }
        Command::Certs {
            uid,
            client,
            new_ca,
            dir,
            expired,
        } => {
            let path = match &cli.config {
                Some(path) => path.clone(),
                None => PathBuf::from("config.toml"),
            };
            let options = paxos::transport::certs::CertsOptions {
                new_ca: *new_ca,
                uids: uid.clone(),
                client: *client,
                dir: dir.clone(),
                expired: *expired,
            };
            let (written, added) = paxos::transport::certs::certs_command(&path, &options)?;
            for file in &written {
                eprintln!("wrote {}", file.display());
            }
            if added {
                eprintln!("added a [tls] section to {}", path.display());
            }
        }
        Command::Run {
            f,
            clients,
            loss,
            timeout_ms,
            skip_slots,
            base_port,
            data_dir,
            duration,
            interval_ms,
        } => {
            let options = LocalClusterOptions {
                f: *f,
                loss: *loss,
                timeout_ms: *timeout_ms,
                skip_slots: skip_slots.clone(),
                base_port: *base_port,
                run_dir: data_dir.clone(),
                paxosd: None,
            };
            let duration = duration.map(|s| seconds(s, "--duration")).transpose()?;
            return run_cluster(
                &options,
                *clients,
                duration,
                Duration::from_millis(*interval_ms),
            )
            .await;
        }
        Command::Chat { name, history } => {
            let config = load_config(&cli)?;
            let name = name
                .clone()
                .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
                .unwrap_or_else(|| "anon".to_string());
            chat(config, name, *history).await?;
        }
        Command::Watch { from } => {
            let config = load_config(&cli)?;
            watch(config, *from, json).await?;
        }
        Command::Bench {
            clients,
            duration,
            size,
            plot,
        } => {
            let config = load_config(&cli)?;
            return bench(
                config,
                *clients,
                seconds(*duration, "--duration")?,
                *size,
                plot,
            )
            .await;
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "paxosctl",
                &mut std::io::stdout(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn seconds(s: f64, flag: &str) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0) {
        bail!("{flag} {s}: must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

async fn run_cluster(
    options: &LocalClusterOptions,
    clients: usize,
    duration: Option<Duration>,
    interval: Duration,
) -> Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first, so a Ctrl-C during startup still stops the children.
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut cluster = LocalCluster::start(options)?;
    eprintln!("run directory: {}", cluster.run_dir().display());
    eprintln!(
        "config:        {}  (try: paxosctl --config {} status)",
        cluster.config_path().display(),
        cluster.config_path().display()
    );
    for (uid, log) in cluster.logs() {
        eprintln!(
            "replica {uid}:     {} -> {}",
            cluster.config().replica[uid as usize].addr,
            log.display()
        );
    }
    eprintln!("press Ctrl-C to stop");
    let mut tasks = Vec::new();
    for n in 0..clients {
        let config = cluster.config().clone();
        tasks.push(tokio::spawn(auto_client(n, config, interval, |line| {
            println!("{line}");
        })));
    }
    let until = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until);
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let mut outcome = ExitCode::SUCCESS;
    loop {
        tokio::select! {
            _ = interrupt.recv() => { eprintln!("SIGINT: stopping"); break; }
            _ = terminate.recv() => { eprintln!("SIGTERM: stopping"); break; }
            _ = &mut until => { eprintln!("--duration reached: stopping"); break; }
            _ = check.tick() => {
                for (uid, status) in cluster.reap_exited() {
                    eprintln!("replica {uid} exited ({status}); see its log");
                }
                if cluster.running() == 0 {
                    eprintln!("every replica exited: stopping");
                    outcome = ExitCode::FAILURE;
                    break;
                }
            }
        }
    }
    for task in &tasks {
        task.abort();
    }
    let killed = tokio::task::block_in_place(|| cluster.stop(STOP_GRACE));
    if killed.is_empty() {
        eprintln!(
            "all replicas stopped; data and logs are in {}",
            cluster.run_dir().display()
        );
    } else {
        eprintln!(
            "replicas {killed:?} did not stop within {}s and were killed; data and logs are in {}",
            STOP_GRACE.as_secs(),
            cluster.run_dir().display()
        );
    }
    Ok(outcome)
}

async fn chat(config: Config, name: String, history: u64) -> Result<()> {
    // Where to start showing the room: the last `history` slots of any replica.
    let mut probe = Client::new(config.clone());
    let mut from = 0;
    for uid in 0..config.replicas() as Uid {
        if let Ok((_, decided_upto)) = probe.read_log(uid, 0, 1, 0).await {
            from = decided_upto.saturating_sub(history);
            break;
        }
    }
    eprintln!(
        "chatting as {name:?} with {} replicas; type a line and press Enter, Ctrl-D to quit",
        config.replicas()
    );
    let shown = Arc::new(AtomicU64::new(from));
    let follower = {
        let shown = shown.clone();
        let mut follower = LogFollower::new(Client::new(config.clone()), from, 0);
        tokio::spawn(async move {
            follow(&mut follower, |entry| {
                if let Some(line) = chat_line(entry) {
                    out(&line)?;
                }
                shown.store(entry.slot + 1, Ordering::Relaxed);
                Ok(())
            })
            .await
        })
    };

    let mut client = Client::new(config);
    let mut lines = stdin_lines();
    let mut last_slot = None;
    while let Some(line) = lines.recv().await {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let body = format!("{name}: {line}");
        let id = client.next_request_id();
        loop {
            match client.submit_with_id(id, &body).await {
                Ok(slot) => {
                    last_slot = Some(slot);
                    break;
                }
                Err(ClientError::Rejected { reason, .. }) => {
                    eprintln!("chat: not sent, the cluster refused it: {reason}");
                    break;
                }
                Err(e) => {
                    eprintln!("chat: {e}");
                    eprintln!(
                        "chat: kept your line {line:?}; re-sending it in 2s (Ctrl-C to give up)"
                    );
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
    // Stdin closed: give the room a moment to show our last message.
    if let Some(slot) = last_slot {
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while shown.load(Ordering::Relaxed) <= slot && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    follower.abort();
    Ok(())
}

/// Lines of stdin, read on a thread of their own (a bounded queue: typing ahead of a
/// slow cluster waits).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let failed = line.is_err();
            if tx.blocking_send(line).is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// Hands every entry to `sink`, forever, reporting unreachability (once) on stderr.
async fn follow(
    follower: &mut LogFollower,
    mut sink: impl FnMut(&paxos::core::LogEntry) -> Result<()>,
) -> Result<()> {
    let mut down = false;
    loop {
        match follower.poll(FOLLOW_WAIT_MS).await {
            Ok(entries) => {
                if down {
                    eprintln!("reading the log from replica {} again", follower.uid());
                    down = false;
                }
                for entry in &entries {
                    sink(entry)?;
                }
            }
            Err(e) => {
                if !down {
                    eprintln!("{e}; retrying");
                    down = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn watch(config: Config, from: Slot, json: bool) -> Result<()> {
    let mut follower = LogFollower::new(Client::new(config), from, 0);
    follow(&mut follower, |entry| {
        if json {
            out(&entry_json(entry))
        } else if let Some(line) = chat_line(entry) {
            out(&line)
        } else {
            Ok(())
        }
    })
    .await
}

async fn bench(
    config: Config,
    clients: usize,
    duration: Duration,
    size: usize,
    plot: &Option<PathBuf>,
) -> Result<ExitCode> {
    if clients == 0 {
        bail!("--clients must be at least 1");
    }
    let options = BenchOptions {
        clients,
        duration,
        size_bytes: size,
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(duration.as_millis() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    let report = run_bench(&config, &options, |p| {
        bar.set_position(p.elapsed.as_millis() as u64);
        bar.set_message(format!(
            "{} commits, {:.0} ops/s, {} errors",
            p.ops, p.ops_per_s, p.errors
        ));
    })
    .await;
    bar.finish();
    let summary = report.summary();
    out(&summary.to_json_line())?;
    if let Some(error) = &report.first_error {
        eprintln!("bench: {} errors; the first: {error}", report.errors);
    }
    if let Some(path) = plot {
        let title = format!(
            "paxos bench: {clients} clients, {size} B messages, {:.0} ops/s",
            summary.ops_per_s
        );
        plot_svg(&report, Path::new(path), &title).map_err(anyhow::Error::msg)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(if report.ops == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["paxosctl", "submit", "--json", "hi"]).unwrap();
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Submit { ref body, .. } if body == "hi"));
        let cli = Cli::try_parse_from(["paxosctl", "--json", "status"]).unwrap();
        assert!(cli.json);
        let cli = Cli::try_parse_from(["paxosctl", "dump-log", "--uid", "2", "--json"]).unwrap();
        assert!(cli.json);
        let cli = Cli::try_parse_from(["paxosctl", "status", "--config", "x.toml"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
    }

    #[test]
    fn dump_log_needs_exactly_one_source() {
        assert!(Cli::try_parse_from(["paxosctl", "dump-log"]).is_err());
        assert!(
            Cli::try_parse_from(["paxosctl", "dump-log", "--uid", "1", "--data-dir", "d"]).is_err()
        );
        assert!(Cli::try_parse_from(["paxosctl", "dump-log", "--data-dir", "d"]).is_ok());
    }

    #[test]
    fn run_and_gen_config_flags() {
        let cli = Cli::try_parse_from([
            "paxosctl",
            "run",
            "-f",
            "2",
            "--clients",
            "3",
            "--skip-slots",
            "1,2",
        ])
        .unwrap();
        match cli.command {
            Command::Run {
                f,
                clients,
                skip_slots,
                ..
            } => assert_eq!((f, clients, skip_slots), (2, 3, vec![1, 2])),
            _ => panic!("not run"),
        }
        let cli = Cli::try_parse_from([
            "paxosctl",
            "gen-config",
            "-f",
            "1",
            "--loss",
            "0.1",
            "-o",
            "c.toml",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::GenConfig { f: 1, .. }));
    }

    #[test]
    fn body_may_start_with_a_dash() {
        let cli = Cli::try_parse_from(["paxosctl", "submit", "-- not a flag"]).unwrap();
        assert!(matches!(cli.command, Command::Submit { ref body, .. } if body == "-- not a flag"));
    }
}
