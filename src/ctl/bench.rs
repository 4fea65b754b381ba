//! `paxosctl bench`: a closed-loop load generator, its progress bar, final JSON line and
//! SVG plot. N tasks, each with its own
//! [`Client`], submit one `size`-byte message after another for `duration`; the caller
//! sees progress every [`TICK`], and gets throughput per tick, every latency and the
//! error count at the end ([`BenchReport`]), which renders as one JSON line
//! ([`BenchSummary`]) and optionally an SVG plot ([`plot_svg`]).
//!
//! With `--read linearizable|stale` the tasks read instead of write: each read is the
//! tail of replica `--uid`'s applied log (`--tail` slots), linearizable (a read index
//! through the leader, then the page, as `dump-log` reads) or stale (the page as the
//! replica has it, as `dump-log --stale`); a read's latency covers both round trips.
//!
//! Bounded: each task has one request in flight; an operation still running at the end
//! is cut off after one attempt timeout past the end and counted as an error.

use super::{escape, out, seconds, CtlError, Format, Globals};
use crate::client::log::Consistency;
use crate::client::{Client, ClientError};
use crate::config::Config;
use crate::core::{Slot, Uid};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Progress is reported, and throughput sampled, this often.
pub const TICK: Duration = Duration::from_millis(100);
/// Most pages one `--read` may take to reach its end before it counts as an error.
const READ_PAGES_MAX: usize = 8;
/// Pause of a task after a failed submit, so a refusing cluster is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Load the cluster and report throughput and latency percentiles
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paxosctl bench --clients 16 --duration 10 --size 100\n  paxosctl bench --clients 64 --duration 30 --size 1000 --plot bench.svg\n  paxosctl bench --read linearizable --uid 1 --tail 256 --clients 1 --duration 10\n\nProgress goes to stderr; stdout gets one line:\n{\"ops_per_s\":..,\"p50_ms\":..,\"p90_ms\":..,\"p99_ms\":..,\"max_ms\":..,\"errors\":..}"
)]
pub struct Bench {
    /// Concurrent clients, each with one request in flight
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub clients: usize,
    /// Seconds to run
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub duration: f64,
    /// Message size in bytes
    #[arg(long, value_name = "B", default_value_t = 100)]
    pub size: usize,
    /// Write an SVG of throughput over time and the latency CDF
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Read instead of write: the tail of replica --uid's log, linearizable (a read
    /// index through the leader first) or stale (as the replica has it)
    #[arg(long, value_name = "MODE")]
    pub read: Option<ReadMode>,
    /// Replica read from (with --read)
    #[arg(long, value_name = "UID", default_value_t = 0, requires = "read")]
    pub uid: Uid,
    /// Slots per read: the last TAIL applied slots (with --read)
    #[arg(long, value_name = "TAIL", default_value_t = 256, requires = "read")]
    pub tail: u32,
}

/// How `bench --read` reads.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Read index through the leader, then the page (dump-log's default)
    Linearizable,
    /// The replica's applied log as it is (dump-log --stale)
    Stale,
}

impl Bench {
    pub async fn run(&self, globals: &Globals) -> Result<(), CtlError> {
        // The final line is JSON whichever is asked for.
        globals.format("bench", &[Format::Simple, Format::Json], Format::Simple)?;
        let config = globals.load_config()?;
        let duration = seconds(self.duration, "--duration")?;
        if self.clients == 0 {
            return Err(CtlError::Usage("--clients must be at least 1".into()));
        }
        let workload = match self.read {
            None => Workload::Submit {
                size_bytes: self.size,
            },
            Some(mode) => {
                config.check_uid(self.uid)?;
                if self.tail == 0 || self.tail > crate::client::log::READ_ENTRIES_MAX {
                    return Err(CtlError::Usage(format!(
                        "--tail {}: must be 1..={}",
                        self.tail,
                        crate::client::log::READ_ENTRIES_MAX
                    )));
                }
                Workload::Read {
                    consistency: match mode {
                        ReadMode::Linearizable => Consistency::Linearizable,
                        ReadMode::Stale => Consistency::Stale,
                    },
                    uid: self.uid,
                    tail: self.tail,
                }
            }
        };
        let what = if self.read.is_some() {
            "reads"
        } else {
            "commits"
        };
        let options = BenchOptions {
            clients: self.clients,
            duration,
            workload,
        };
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(duration.as_millis() as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        let report = run_bench(&config, &options, |p| {
            bar.set_position(p.elapsed.as_millis() as u64);
            bar.set_message(format!(
                "{} {what}, {:.0} ops/s, {} errors",
                p.ops, p.ops_per_s, p.errors
            ));
        })
        .await;
        bar.finish();
        let summary = report.summary();
        out(&summary.to_json_line())?;
        if let Some(error) = &report.first_error {
            eprintln!(
                "bench: {} errors; the first: {}",
                report.errors,
                escape(error)
            );
        }
        if let Some(path) = &self.plot {
            let title = match self.read {
                None => format!(
                    "paxos bench: {} clients, {} B messages, {:.0} ops/s",
                    self.clients, self.size, summary.ops_per_s
                ),
                Some(mode) => format!(
                    "paxos bench: {} clients, {mode:?} reads of {} slots from replica {}, {:.0} ops/s",
                    self.clients, self.tail, self.uid, summary.ops_per_s
                ),
            };
            plot_svg(&report, path, &title).map_err(CtlError::Failed)?;
            eprintln!("wrote {}", path.display());
        }
        if report.ops == 0 {
            let why = report.first_error.as_deref().unwrap_or("no error either");
            let none = if self.read.is_some() {
                "no read completed"
            } else {
                "no message was committed"
            };
            return Err(CtlError::Failed(format!("{none}: {}", escape(why))));
        }
        Ok(())
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub clients: usize,
    pub duration: Duration,
    pub workload: Workload,
}

/// What each task does, one operation after another.
#[derive(Clone, Copy, Debug)]
pub enum Workload {
    /// Submit a `size_bytes` message.
    Submit { size_bytes: usize },
    /// Read the last `tail` applied slots of replica `uid`'s log.
    Read {
        consistency: Consistency,
        uid: Uid,
        tail: u32,
    },
}

/// One task's state between operations.
struct Task {
    client: Client,
    workload: Workload,
    body: String,
    /// The replica's decided prefix as its last read answered (where the tail ends).
    decided_upto: Slot,
}

impl Task {
    /// One operation: a submit, or a read of the log's tail.
    async fn op(&mut self) -> Result<(), ClientError> {
        match self.workload {
            Workload::Submit { .. } => self.client.submit(&self.body).await.map(|_| ()),
            Workload::Read {
                consistency,
                uid,
                tail,
            } => {
                let end = match consistency {
                    Consistency::Linearizable => self.client.read_index(uid).await?,
                    Consistency::Stale => self.decided_upto,
                };
                // Page until the read reaches `end`, as dump-log does: a replica's page
                // may stop short (where its store ends and the entries it holds in
                // memory begin). Anything else is a broken read, not a fast one.
                let from = end.saturating_sub(Slot::from(tail));
                let mut next = from;
                for _ in 0..READ_PAGES_MAX {
                    let want = u32::try_from(end.saturating_sub(next))
                        .unwrap_or(tail)
                        .clamp(1, tail);
                    let (entries, decided_upto) = self.client.read_log(uid, next, want, 0).await?;
                    self.decided_upto = decided_upto;
                    match entries.last() {
                        Some(last) if last.slot >= next => next = last.slot + 1,
                        _ => break,
                    }
                    if next >= end {
                        return Ok(());
                    }
                }
                if end == 0 {
                    return Ok(());
                }
                Err(ClientError::Replica {
                    uid,
                    addr: self
                        .client
                        .config()
                        .replica_addr(uid)
                        .map_or_else(|_| "?".to_string(), |a| a.to_string()),
                    reason: format!(
                        "read of slots {from}..{end} ended at {next} after {READ_PAGES_MAX} pages at most"
                    ),
                })
            }
        }
    }
}

/// Counters as seen at one tick.
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchProgress {
    pub elapsed: Duration,
    pub ops: u64,
    pub errors: u64,
    /// Throughput over the last tick.
    pub ops_per_s: f64,
}

/// Everything measured.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    /// Wall time from the start until the last task stopped.
    pub elapsed: Duration,
    pub ops: u64,
    pub errors: u64,
    /// The latency of every committed submit, sorted ascending.
    pub latencies: Vec<Duration>,
    /// Commits completed in each [`TICK`] from the start.
    pub ops_per_tick: Vec<u64>,
    /// The first error seen, to show the user why errors happened.
    pub first_error: Option<String>,
}

/// The final machine-readable line:
/// `{"ops_per_s":..,"p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..,"errors":..}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchSummary {
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
}

impl BenchReport {
    /// The latency at quantile `q` in `[0, 1]` (nearest rank), zero without samples.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let n = self.latencies.len();
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1]
    }

    pub fn summary(&self) -> BenchSummary {
        let ms = |d: Duration| round3(d.as_secs_f64() * 1000.0);
        let secs = self.elapsed.as_secs_f64();
        BenchSummary {
            ops_per_s: if secs > 0.0 {
                round3(self.ops as f64 / secs)
            } else {
                0.0
            },
            p50_ms: ms(self.quantile(0.50)),
            p90_ms: ms(self.quantile(0.90)),
            p99_ms: ms(self.quantile(0.99)),
            max_ms: ms(self.latencies.last().copied().unwrap_or_default()),
            errors: self.errors,
        }
    }
}

impl BenchSummary {
    /// The JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // Finite floats and integers: cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs the benchmark against the cluster of `config`, calling `on_tick` every
/// [`TICK`] with the counters so far.
pub async fn run_bench(
    config: &Config,
    options: &BenchOptions,
    mut on_tick: impl FnMut(&BenchProgress),
) -> BenchReport {
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let end = started + options.duration;
    let mut tasks = Vec::with_capacity(options.clients);
    let size_bytes = match options.workload {
        Workload::Submit { size_bytes } => size_bytes,
        Workload::Read { .. } => 0,
    };
    for _ in 0..options.clients {
        let client = Client::new(config.clone());
        let cutoff = end + client.options().attempt_timeout;
        let body: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(size_bytes)
            .map(char::from)
            .collect();
        let mut task = Task {
            client,
            workload: options.workload,
            body,
            decided_upto: 0,
        };
        let (ops, errors, stop) = (ops.clone(), errors.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut first_error: Option<String> = None;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let sent = Instant::now();
                let result = tokio::time::timeout_at(cutoff.into(), task.op()).await;
                match result {
                    Ok(Ok(())) => {
                        latencies.push(sent.elapsed());
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| e.to_string());
                        // Rejected or refused come back at once: do not spin on them.
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| {
                            "an operation still unanswered when the run ended was cut off"
                                .to_string()
                        });
                    }
                }
            }
            (latencies, first_error)
        }));
    }

    let mut ops_per_tick = Vec::new();
    let mut last_ops = 0;
    let mut ticker = tokio::time::interval_at((started + TICK).into(), TICK);
    loop {
        ticker.tick().await;
        let now_ops = ops.load(Ordering::Relaxed);
        ops_per_tick.push(now_ops - last_ops);
        let progress = BenchProgress {
            elapsed: started.elapsed(),
            ops: now_ops,
            errors: errors.load(Ordering::Relaxed),
            ops_per_s: (now_ops - last_ops) as f64 / TICK.as_secs_f64(),
        };
        last_ops = now_ops;
        on_tick(&progress);
        if Instant::now() >= end {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);

    let mut report = BenchReport::default();
    for task in tasks {
        match task.await {
            Ok((latencies, first_error)) => {
                report.latencies.extend(latencies);
                if report.first_error.is_none() {
                    report.first_error = first_error;
                }
            }
            Err(e) => {
                report.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    report.elapsed = started.elapsed();
    report.ops = ops.load(Ordering::Relaxed);
    report.errors = errors.load(Ordering::Relaxed);
    report.latencies.sort_unstable();
    report.ops_per_tick = ops_per_tick;
    report
}

/// Writes an SVG with throughput over time (ops/s per [`TICK`]) on top and the latency
/// CDF below.
pub fn plot_svg(report: &BenchReport, path: &Path, title: &str) -> Result<(), String> {
    use plotters::prelude::*;
    let fail = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    let root = SVGBackend::new(path, (960, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(360);

    let tick_s = TICK.as_secs_f64();
    let points: Vec<(f64, f64)> = report
        .ops_per_tick
        .iter()
        .enumerate()
        .map(|(i, ops)| ((i + 1) as f64 * tick_s, *ops as f64 / tick_s))
        .collect();
    let x_max = points.last().map_or(1.0, |p| p.0).max(tick_s);
    let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "throughput (committed ops/s, per 100 ms)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("ops/s")
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(|e| fail(&e))?;

    let n = report.latencies.len();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let lat_max = report.latencies.last().map_or(1.0, ms).max(0.001) * 1.05;
    // At most ~1000 points: every k-th sample of the sorted latencies.
    let step = (n / 1000).max(1);
    let cdf: Vec<(f64, f64)> = report
        .latencies
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == n)
        .map(|(i, d)| (ms(d), (i + 1) as f64 / n as f64 * 100.0))
        .collect();
    let summary = report.summary();
    let caption = format!(
        "latency CDF ({n} commits; p50 {} ms, p99 {} ms, max {} ms)",
        summary.p50_ms, summary.p99_ms, summary.max_ms
    );
    let mut chart = ChartBuilder::on(&bottom)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..lat_max, 0.0..100.0)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("% of commits at or below")
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(LineSeries::new(cdf, &RED))
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BenchReport {
        BenchReport {
            elapsed: Duration::from_secs(2),
            ops: 100,
            errors: 3,
            latencies: (1..=100).map(Duration::from_millis).collect(),
            ops_per_tick: vec![5; 20],
            first_error: None,
        }
    }

    #[test]
    fn summary_line_has_the_documented_keys_in_order() {
        let line = report().summary().to_json_line();
        assert_eq!(
            line,
            r#"{"ops_per_s":50.0,"p50_ms":50.0,"p90_ms":90.0,"p99_ms":99.0,"max_ms":100.0,"errors":3}"#
        );
        let empty = BenchReport::default().summary().to_json_line();
        assert_eq!(
            empty,
            r#"{"ops_per_s":0.0,"p50_ms":0.0,"p90_ms":0.0,"p99_ms":0.0,"max_ms":0.0,"errors":0}"#
        );
    }

    #[test]
    fn plot_writes_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.svg");
        plot_svg(&report(), &path, "bench").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("latency"), "{svg}");
        // An empty run still draws.
        plot_svg(&BenchReport::default(), &path, "empty").unwrap();
    }
}
