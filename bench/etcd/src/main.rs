//! etcd-bench: a closed-loop put load generator for etcd's v3 API with the same load
//! shape and the same final line as `paxosctl bench`, so the two can be compared on one
//! machine.
//!
//! Load shape (as `paxosctl bench`): `--clients N` tasks, each with exactly one put in
//! flight, each submitting one `--size B`-byte value after another for `--duration S`
//! seconds. Keys are `k<client>-<seq>` (every put writes a new key, as every paxos
//! submit appends a new slot). A put still running at the end is cut off one
//! `--timeout-ms` past the end and counted as an error.
//!
//! Connections (like etcd's own `benchmark --conns/--clients`): by default (`--conns 0`)
//! every client has its own gRPC connection (one HTTP/2 channel), as every
//! `paxosctl bench` client has its own TCP connection. `--conns C` makes C channels
//! shared round-robin by the N clients (client i uses channel i mod C), as etcd's
//! benchmark does.
//!
//! The connections are made (and, with `--target-leader`, the leader found) before the
//! clock starts, as etcd's benchmark does; `paxosctl bench` clients connect lazily, so
//! their connection setup falls inside the first submit's latency (visible in max only).
//!
//! Endpoints: with `--target-leader`, the endpoints are asked for their status and only
//! the leader's endpoint is used (etcd's benchmark `--target-leader`; the paxos client
//! also sends to the leader). Without it, each channel balances over all endpoints and
//! a follower forwards the proposal to the leader (one more hop).
//!
//! Reads (`--read l|s`, for `../reads.sh`): before the clock starts, `--keys K` keys
//! `r/00000`.. are written with `--size`-byte values; then each client, one range read
//! after another, gets all K of them (`get r/ --prefix --limit K`), linearizable (`l`,
//! etcd's default: a ReadIndex round through the leader) or serializable (`s`: the
//! member's local store). `--target-follower` sends to a follower's endpoint only.
//!
//! Output: progress on stderr; on stdout one line
//! `{"ops_per_s":..,"p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..,"errors":..}`
//! computed exactly as `paxosctl bench` does (nearest-rank quantiles of every successful
//! put's latency; ops/s = successful puts / wall time until the last client stopped;
//! values rounded to 3 decimals).

use clap::Parser;
use etcd_client::{Client, ConnectOptions, GetOptions};
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pause of a client after a failed put, so a refusing cluster is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Progress goes to stderr this often.
const TICK: Duration = Duration::from_secs(1);

#[derive(Parser, Debug)]
#[command(
    name = "etcd-bench",
    about = "Closed-loop etcd v3 put benchmark with the load shape and JSON line of `paxosctl bench`",
    after_help = "Example:\n  etcd-bench --endpoints 127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793 --target-leader --clients 16 --duration 10 --size 100\n\nProgress goes to stderr; stdout gets one line:\n{\"ops_per_s\":..,\"p50_ms\":..,\"p90_ms\":..,\"p99_ms\":..,\"max_ms\":..,\"errors\":..}"
)]
struct Args {
    /// Comma-separated etcd client endpoints (host:port or http://host:port)
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Concurrent clients, each with one put in flight
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// gRPC connections shared round-robin by the clients; 0 = one per client
    #[arg(long, default_value_t = 0)]
    conns: usize,
    /// Seconds to run
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Value size in bytes
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Send every request to the current leader's endpoint only
    #[arg(long, conflicts_with = "target_follower")]
    target_leader: bool,
    /// Send every request to one follower's endpoint only
    #[arg(long)]
    target_follower: bool,
    /// Range reads instead of puts: l = linearizable (etcd's default), s = serializable
    #[arg(long, value_name = "l|s")]
    read: Option<String>,
    /// Keys per range read (written before the clock starts), with --read
    #[arg(long, default_value_t = 256)]
    keys: usize,
    /// Bound on one put, and on the cut-off after the end (ms)
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Accepted for symmetry with `paxosctl bench --json`; the last stdout line is always JSON
    #[arg(long)]
    json: bool,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nearest-rank quantile of sorted samples, zero without samples (as paxosctl bench).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let n = sorted.len();
    let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

fn connect_options(timeout: Duration) -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout)
}

/// The endpoint whose member is the leader (or, with `!leader`, a follower), by asking
/// each endpoint for its status.
async fn find_member(
    endpoints: &[String],
    timeout: Duration,
    leader: bool,
) -> Result<String, String> {
    let mut last_error = String::from("no endpoints");
    for ep in endpoints {
        let attempt = async {
            let mut c = Client::connect([ep.as_str()], Some(connect_options(timeout))).await?;
            c.status().await
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(status)) => {
                let me = status.header().map(|h| h.member_id()).unwrap_or(0);
                let is_leader = me != 0 && status.leader() == me;
                if me != 0 && status.leader() != 0 && is_leader == leader {
                    return Ok(ep.clone());
                }
                last_error = format!(
                    "{ep} is not a {}",
                    if leader { "leader" } else { "follower" }
                );
            }
            Ok(Err(e)) => last_error = format!("{ep}: {e}"),
            Err(_) => last_error = format!("{ep}: status timed out"),
        }
    }
    Err(format!("no such member found: {last_error}"))
}

async fn run(args: Args) -> Result<ExitCode, String> {
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let serializable = match args.read.as_deref() {
        None => None,
        Some("l") => Some(false),
        Some("s") => Some(true),
        Some(other) => return Err(format!("--read {other}: must be l or s")),
    };
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let endpoints: Vec<String> = if args.target_leader || args.target_follower {
        // A fresh cluster may still be electing: retry for a few seconds.
        let mut found = Err(String::new());
        for _ in 0..20 {
            found = find_member(&args.endpoints, timeout, args.target_leader).await;
            if found.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        vec![found?]
    } else {
        args.endpoints.clone()
    };
    let conns = if args.conns == 0 {
        args.clients
    } else {
        args.conns.min(args.clients)
    };
    eprintln!(
        "etcd-bench: {} clients over {} connection(s) to {}, {} s, {} B values",
        args.clients,
        conns,
        endpoints.join(","),
        args.duration,
        args.size
    );
    let mut channels = Vec::with_capacity(conns);
    for _ in 0..conns {
        let c = Client::connect(endpoints.clone(), Some(connect_options(timeout)))
            .await
            .map_err(|e| format!("connect {}: {e}", endpoints.join(",")))?;
        channels.push(c.kv_client());
    }
    let keys = args.keys.max(1) as i64;
    if serializable.is_some() {
        let mut kv = channels[0].clone();
        let value: Vec<u8> = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(args.size)
            .collect();
        for i in 0..keys {
            kv.put(format!("r/{i:05}"), value.clone(), None)
                .await
                .map_err(|e| format!("writing the keys to read: {e}"))?;
        }
        eprintln!("etcd-bench: reading {keys} keys r/.. per get, serializable: {serializable:?}");
    }

    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration);
    let cutoff = end + timeout;
    let mut tasks = Vec::with_capacity(args.clients);
    for client in 0..args.clients {
        let mut kv = channels[client % conns].clone();
        let value: Vec<u8> = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(args.size)
            .collect();
        let (ops, errors, stop) = (ops.clone(), errors.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut first_error: Option<String> = None;
            let mut seq: u64 = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let key = format!("k{client}-{seq}");
                seq += 1;
                let sent = Instant::now();
                let op = async {
                    match serializable {
                        None => kv.put(key, value.clone(), None).await.map(|_| ()),
                        Some(serializable) => {
                            let mut options = GetOptions::new().with_prefix().with_limit(keys);
                            if serializable {
                                options = options.with_serializable();
                            }
                            kv.get("r/", Some(options)).await.map(|_| ())
                        }
                    }
                };
                match tokio::time::timeout_at(cutoff.into(), op).await {
                    Ok(Ok(())) => {
                        latencies.push(sent.elapsed());
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| e.to_string());
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| "cut off at the end".to_string());
                    }
                }
            }
            (latencies, first_error)
        }));
    }

    let mut last_ops = 0;
    let mut ticker = tokio::time::interval_at((started + TICK).into(), TICK);
    loop {
        ticker.tick().await;
        let now_ops = ops.load(Ordering::Relaxed);
        eprintln!(
            "{:>5.1}s {} ops, {:.0} ops/s, {} errors",
            started.elapsed().as_secs_f64(),
            now_ops,
            (now_ops - last_ops) as f64 / TICK.as_secs_f64(),
            errors.load(Ordering::Relaxed)
        );
        last_ops = now_ops;
        if Instant::now() >= end {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);

    let mut latencies = Vec::new();
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok((l, e)) => {
                latencies.extend(l);
                if first_error.is_none() {
                    first_error = e;
                }
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ops = ops.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    latencies.sort_unstable();
    let ms = |d: Duration| round3(d.as_secs_f64() * 1000.0);
    let ops_per_s = if elapsed > 0.0 {
        round3(ops as f64 / elapsed)
    } else {
        0.0
    };
    // Same field order and formatting as paxosctl bench (serde_json of f64 / u64).
    println!(
        "{{\"ops_per_s\":{},\"p50_ms\":{},\"p90_ms\":{},\"p99_ms\":{},\"max_ms\":{},\"errors\":{}}}",
        json_f64(ops_per_s),
        json_f64(ms(quantile(&latencies, 0.50))),
        json_f64(ms(quantile(&latencies, 0.90))),
        json_f64(ms(quantile(&latencies, 0.99))),
        json_f64(ms(latencies.last().copied().unwrap_or_default())),
        errors
    );
    if let Some(e) = first_error {
        eprintln!("etcd-bench: {errors} errors; the first: {e}");
    }
    Ok(if ops == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A finite f64 as serde_json writes it (always with a decimal point: 50.0, 0.0, 1.234).
fn json_f64(x: f64) -> String {
    let s = format!("{x:?}");
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("etcd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
