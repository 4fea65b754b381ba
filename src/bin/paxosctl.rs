//! `paxosctl`: the one tool a person uses with a paxos cluster: submit, chat, watch,
//! inspect, benchmark, run a local cluster. Argument parsing, logging setup and dispatch
//! only; each command lives in `paxos::ctl::<command>`.

use clap::{CommandFactory, Parser, Subcommand};
use paxos::ctl::{self, CtlError, Globals};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "paxosctl",
    version,
    about = "Talk to a paxos chat-log cluster: submit, chat, watch, inspect, benchmark, run one locally",
    after_help = "Examples:\n  paxosctl run -f 1 --clients 3          # a local cluster with 3 automatic clients\n  paxosctl submit \"hello\"                 # prints the slot\n  paxosctl status                          # every replica's role, ballot, decided prefix\n  paxosctl --config /etc/paxos/config.toml watch -w json\n  PAXOSCTL_ENDPOINTS=10.0.0.1:7101,10.0.0.2:7101,10.0.0.3:7101 paxosctl health\n\nThe config is the first of: --config, --endpoints, $PAXOSCTL_CONFIG,\n$PAXOSCTL_ENDPOINTS, ./config.toml, the built-in default (3 replicas on\n127.0.0.1:7101-7103; paxosctl says so on stderr when it uses it).\n\nExit codes: 0 ok, 1 failed, 2 bad usage or config, 3 cluster unavailable (no\nquorum, no replica reachable)."
)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Submit(ctl::submit::Submit),
    DumpLog(ctl::dump_log::DumpLog),
    Status(ctl::status::Status),
    GenConfig(ctl::gen_config::GenConfig),
    Certs(ctl::certs::Certs),
    Run(ctl::run::Run),
    Chat(ctl::chat::Chat),
    Watch(ctl::watch::Watch),
    Bench(ctl::bench::Bench),
    /// Back up the chat log to a file, restore a new cluster's store from one, inspect one
    #[command(subcommand)]
    Snapshot(ctl::snapshot::SnapshotCommand),
    Health(ctl::health::HealthCmd),
    Version(ctl::version::Version),
    Completions(ctl::completions::Completions),
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
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            // Reasons can quote what a replica or a file said: escaped for the terminal.
            eprintln!("paxosctl: error: {}", ctl::escape(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CtlError> {
    let globals = &cli.globals;
    match &cli.command {
        Command::Submit(cmd) => cmd.run(globals).await,
        Command::DumpLog(cmd) => cmd.run(globals).await,
        Command::Status(cmd) => cmd.run(globals).await,
        Command::GenConfig(cmd) => cmd.run(globals),
        Command::Certs(cmd) => cmd.run(globals),
        Command::Run(cmd) => cmd.run(globals).await,
        Command::Chat(cmd) => cmd.run(globals).await,
        Command::Watch(cmd) => cmd.run(globals).await,
        Command::Bench(cmd) => cmd.run(globals).await,
        Command::Snapshot(cmd) => ctl::snapshot::run_with(cmd, globals).await,
        Command::Health(cmd) => cmd.run(globals).await,
        Command::Version(cmd) => cmd.run(globals),
        Command::Completions(cmd) => cmd.run(globals, Cli::command()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["paxosctl", "submit", "--json", "hi"]).unwrap();
        assert!(cli.globals.json);
        assert!(matches!(cli.command, Command::Submit(ref s) if s.body.as_deref() == Some("hi")));
        let cli = Cli::try_parse_from(["paxosctl", "--json", "status"]).unwrap();
        assert!(cli.globals.json);
        let cli = Cli::try_parse_from(["paxosctl", "dump-log", "--uid", "2", "--json"]).unwrap();
        assert!(cli.globals.json);
        let cli = Cli::try_parse_from(["paxosctl", "status", "--config", "x.toml"]).unwrap();
        assert_eq!(cli.globals.config, Some(PathBuf::from("x.toml")));
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
            Command::Run(run) => {
                assert_eq!((run.f, run.clients, run.skip_slots), (2, 3, vec![1, 2]))
            }
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
        assert!(matches!(cli.command, Command::GenConfig(ref g) if g.f == 1));
    }

    #[test]
    fn body_may_start_with_a_dash() {
        let cli = Cli::try_parse_from(["paxosctl", "submit", "-- not a flag"]).unwrap();
        assert!(
            matches!(cli.command, Command::Submit(ref s) if s.body.as_deref() == Some("-- not a flag"))
        );
        let cli = Cli::try_parse_from(["paxosctl", "submit", "-"]).unwrap();
        assert!(matches!(cli.command, Command::Submit(ref s) if s.body.as_deref() == Some("-")));
    }

    #[test]
    fn etcdctl_style_globals() {
        let cli = Cli::try_parse_from(["paxosctl", "status", "-w", "simple"]).unwrap();
        assert_eq!(cli.globals.write_out, Some(ctl::Format::Simple));
        let cli = Cli::try_parse_from([
            "paxosctl",
            "--endpoints",
            "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3",
            "health",
            "--dial-timeout",
            "200ms",
            "--command-timeout",
            "3s",
        ])
        .unwrap();
        assert_eq!(cli.globals.endpoints.len(), 3);
        assert_eq!(
            cli.globals.dial_timeout,
            Some(std::time::Duration::from_millis(200))
        );
        assert!(
            Cli::try_parse_from(["paxosctl", "--config", "c", "--endpoints", "a", "status"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["paxosctl", "version"]).is_ok());
        assert!(
            Cli::try_parse_from(["paxosctl", "dump-log", "--uid", "1", "--stale", "--json"])
                .is_ok()
        );
    }
}
