//! A stand-in `paxosd` for testing the systemd plumbing without the real daemon:
//! `bash tests/systemd/nspawn_test.sh --standin` builds it with rustc alone.
//!
//! It takes the real daemon's flags (`--config F --uid N`), reads `data_dir`, `log_dir`
//! and the N-th `addr` from the config with plain string matching, records each start
//! in `<data_dir>/node-N/starts`, binds its port, sends READY=1 through the real
//! `src/node/systemd.rs`, answers every connection with one line, and on SIGTERM sends
//! STOPPING=1, records `stop`, and exits 0.

#[path = "../../src/node/systemd.rs"]
mod systemd;

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_signal: i32) {
    TERM.store(true, Ordering::SeqCst);
}

extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
}

const SIGTERM: i32 = 15;

fn fail(message: &str) -> ! {
    eprintln!("standin: {message}");
    std::process::exit(2);
}

/// The quoted value of `key = "..."` lines, in order.
fn values<'a>(config: &'a str, key: &str) -> Vec<&'a str> {
    config
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"'))
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| fail(&format!("missing {name}")))
    };
    let config_path = flag("--config");
    let uid: usize = flag("--uid")
        .parse()
        .unwrap_or_else(|_| fail("bad --uid"));
    let config = std::fs::read_to_string(&config_path)
        .unwrap_or_else(|e| fail(&format!("read {config_path}: {e}")));
    let data_dir = values(&config, "data_dir")
        .first()
        .copied()
        .unwrap_or_else(|| fail("no data_dir"))
        .to_string();
    let log_dir = values(&config, "log_dir")
        .first()
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("{data_dir}/logs"));
    let addr = values(&config, "addr")
        .get(uid)
        .copied()
        .unwrap_or_else(|| fail("no such uid"))
        .to_string();

    let journald = systemd::under_journald();
    let log = |message: &str| {
        if journald {
            eprintln!("INFO standin uid={uid}: {message}");
        } else {
            eprintln!("2026-01-01T00:00:00Z INFO standin uid={uid}: {message}");
        }
    };

    let node_dir = format!("{data_dir}/node-{uid}");
    std::fs::create_dir_all(&node_dir).unwrap_or_else(|e| fail(&format!("{node_dir}: {e}")));
    std::fs::create_dir_all(&log_dir).unwrap_or_else(|e| fail(&format!("{log_dir}: {e}")));
    let record = |line: &str| {
        let path = format!("{node_dir}/starts");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| fail(&format!("{path}: {e}")));
        writeln!(file, "{line}").unwrap_or_else(|e| fail(&format!("{path}: {e}")));
        file.sync_all().unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    };
    record(&format!("start {}", std::process::id()));
    let log_file = format!("{log_dir}/standin-{uid}.log");
    std::fs::write(&log_file, "started\n").unwrap_or_else(|e| fail(&format!("{log_file}: {e}")));

    // SAFETY: the handler only stores to an atomic.
    unsafe { signal(SIGTERM, on_term) };
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| fail(&format!("bind {addr}: {e}")));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| fail(&format!("nonblocking: {e}")));
    log(&format!("listening on {addr}, journald={journald}"));
    systemd::notify("READY=1");

    while !TERM.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = writeln!(stream, "standin uid {uid}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    systemd::notify("STOPPING=1");
    record("stop");
    log("clean shutdown");
}
