//! `paxosctl run`: the seed's script mode: a local cluster ([`super::local`]) with
//! automatic clients, stopped by Ctrl-C (or `--duration`) with nothing left running.

use super::local::{auto_client, AutoEvent, LocalCluster, LocalClusterOptions, STOP_GRACE};
use super::{escape, out, seconds, CtlError, Format, Globals};
use crate::config::TIMEOUT_MS_DEFAULT;
use crate::core::Slot;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest `run` waits for the cluster to be healthy before starting its clients.
const READY_WAIT: Duration = Duration::from_secs(10);

/// Waits until a quorum answers and a leader is known, up to [`READY_WAIT`]; else says
/// why not.
async fn wait_ready(config: &crate::config::Config) -> Result<(), String> {
    use crate::client::status::{cluster_status, Health};
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    loop {
        let views = cluster_status(config).await;
        let problem = Health::of(&views).problem(&views);
        match problem {
            None => return Ok(()),
            Some(why) if tokio::time::Instant::now() >= deadline => return Err(why),
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// How often the progress lines are redrawn (at a terminal) or printed (otherwise).
const PROGRESS_TERMINAL: Duration = Duration::from_millis(200);
const PROGRESS_PLAIN: Duration = Duration::from_secs(1);

/// Run a local cluster of 2f+1 paxosd with automatic clients until Ctrl-C
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl run -f 1 --clients 3\n  paxosctl run -f 2 --clients 5 --loss 0.2 --skip-slots 1,2 --duration 10\n\nWrites config.toml, the stores and one paxosd-<uid>.log per replica in the run\ndirectory (--data-dir, or a fresh one under the temp dir) and prints where. Ctrl-C\nstops every replica (SIGTERM, then SIGKILL after 5 s). The header (run directory,\nconfig, logs, how to stop) goes to stderr first and again at the end; stdout shows\none progress line per client (every commit with --verbose)."
)]
pub struct Run {
    /// Failures tolerated (2f+1 replicas)
    #[arg(short = 'f', long = "failures", value_name = "F")]
    pub f: usize,
    /// Automatic clients submitting random messages
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub clients: usize,
    /// Probability of dropping each peer message
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub loss: f64,
    /// Failure-detection timeout
    #[arg(long, value_name = "T", default_value_t = TIMEOUT_MS_DEFAULT)]
    pub timeout_ms: u64,
    /// Slots uid 0 never proposes in (filled with no-ops by a later leader)
    #[arg(long, value_name = "SLOTS", value_delimiter = ',')]
    pub skip_slots: Vec<Slot>,
    /// Port of uid 0 [default: 7101 if free, else a free range]
    #[arg(long, value_name = "P")]
    pub base_port: Option<u16>,
    /// Run directory [default: a fresh one under the temp dir]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Stop by itself after S seconds
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Pause of each client between messages
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub interval_ms: u64,
    /// Print every commit instead of a progress line per client
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// One automatic client's counters, for its progress line.
#[derive(Clone, Debug, Default)]
struct Progress {
    commits: u64,
    errors: u64,
    last_slot: Option<Slot>,
    last_error: Option<String>,
}

impl Progress {
    fn line(&self, n: usize) -> String {
        let mut line = format!("client {n}: {} commits", self.commits);
        if let Some(slot) = self.last_slot {
            line.push_str(&format!(", last slot {slot}"));
        }
        if self.errors > 0 {
            line.push_str(&format!(", {} errors", self.errors));
            if let Some(error) = &self.last_error {
                line.push_str(&format!(" (last: {})", escape(error)));
            }
        }
        line
    }
}

/// The header: where everything is and how to stop.
fn header(cluster: &LocalCluster) -> String {
    let mut text = format!(
        "run directory: {}\nconfig:        {}  (try: paxosctl --config {} status)\n",
        cluster.run_dir().display(),
        cluster.config_path().display(),
        cluster.config_path().display()
    );
    for (uid, log) in cluster.logs() {
        text.push_str(&format!(
            "replica {uid}:     {} -> {}\n",
            cluster.config().replica[uid as usize].addr,
            log.display()
        ));
    }
    text
}

impl Run {
    /// Runs until Ctrl-C, SIGTERM or `--duration`; fails if every replica exited.
    pub async fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        use tokio::signal::unix::{signal, SignalKind};
        globals.format("run", &[Format::Simple], Format::Simple)?;
        let options = LocalClusterOptions {
            f: self.f,
            loss: self.loss,
            timeout_ms: self.timeout_ms,
            skip_slots: self.skip_slots.clone(),
            base_port: self.base_port,
            run_dir: self.data_dir.clone(),
            paxosd: None,
        };
        let duration = self
            .duration
            .map(|s| seconds(s, "--duration"))
            .transpose()?;
        let interval = Duration::from_millis(self.interval_ms);
        // Handlers first, so a Ctrl-C during startup still stops the children.
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|e| CtlError::io("installing the SIGINT handler", e))?;
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| CtlError::io("installing the SIGTERM handler", e))?;
        let mut cluster = LocalCluster::start(&options)?;
        eprint!("{}", header(&cluster));
        eprintln!("press Ctrl-C to stop");
        // Clients start once the cluster can commit, so their first submits do not fail
        // against replicas still opening their stores.
        let started = std::time::Instant::now();
        match wait_ready(cluster.config()).await {
            Ok(()) => eprintln!(
                "cluster ready (a quorum answers, a leader is known) after {} ms",
                started.elapsed().as_millis()
            ),
            Err(why) => eprintln!(
                "cluster not ready after {} s ({}); starting the clients anyway",
                READY_WAIT.as_secs(),
                escape(&why)
            ),
        }
        let progress: Arc<Vec<Mutex<Progress>>> =
            Arc::new((0..self.clients).map(|_| Mutex::default()).collect());
        let verbose = self.verbose;
        let mut tasks = Vec::new();
        for n in 0..self.clients {
            let config = cluster.config().clone();
            let progress = progress.clone();
            tasks.push(tokio::spawn(auto_client(
                n,
                config,
                interval,
                move |event| {
                    if let Ok(mut p) = progress[n].lock() {
                        match &event {
                            AutoEvent::Committed { slot, .. } => {
                                p.commits += 1;
                                p.last_slot = Some(*slot);
                            }
                            AutoEvent::Failed { error, .. } => {
                                p.errors += 1;
                                p.last_error = Some(error.clone());
                            }
                        }
                    }
                    if verbose {
                        let line = match event {
                            AutoEvent::Committed { body, slot } => {
                                format!("client {n}: {:?} -> slot {slot}", escape(&body))
                            }
                            AutoEvent::Failed { body, error } => {
                                format!(
                                    "client {n}: {:?} failed: {}",
                                    escape(&body),
                                    escape(&error)
                                )
                            }
                        };
                        // A closed stdout only silences the lines; the run goes on.
                        let _ = out(&line);
                    }
                },
            )));
        }
        let terminal = std::io::stdout().is_terminal();
        let bars = (!verbose && terminal).then(|| {
            let multi =
                indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stdout());
            let bars: Vec<indicatif::ProgressBar> = (0..self.clients)
                .map(|_| multi.add(indicatif::ProgressBar::new_spinner()))
                .collect();
            (multi, bars)
        });
        let mut show = tokio::time::interval(if terminal {
            PROGRESS_TERMINAL
        } else {
            PROGRESS_PLAIN
        });
        show.tick().await;
        let draw = |bars: &Option<(indicatif::MultiProgress, Vec<indicatif::ProgressBar>)>| {
            for (n, p) in progress.iter().enumerate() {
                let line = p.lock().map(|p| p.line(n)).unwrap_or_default();
                match bars {
                    Some((_, bars)) => bars[n].set_message(line),
                    None => {
                        let _ = out(&line);
                    }
                }
            }
        };
        let until = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(until);
        let mut check = tokio::time::interval(Duration::from_millis(500));
        let mut outcome = Ok(());
        loop {
            tokio::select! {
                _ = interrupt.recv() => { eprintln!("SIGINT: stopping"); break; }
                _ = terminate.recv() => { eprintln!("SIGTERM: stopping"); break; }
                _ = &mut until => { eprintln!("--duration reached: stopping"); break; }
                _ = show.tick(), if !verbose => draw(&bars),
                _ = check.tick() => {
                    for (uid, status) in cluster.reap_exited() {
                        eprintln!("replica {uid} exited ({status}); see its log");
                    }
                    if cluster.running() == 0 {
                        outcome = Err(CtlError::Failed("every replica exited".into()));
                        break;
                    }
                }
            }
        }
        for task in &tasks {
            task.abort();
        }
        if !verbose {
            draw(&bars);
        }
        if let Some((_, bars)) = &bars {
            for bar in bars {
                bar.finish();
            }
        }
        let killed = tokio::task::block_in_place(|| cluster.stop(STOP_GRACE));
        eprint!("{}", header(&cluster));
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
        outcome
    }
}
