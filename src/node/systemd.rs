//! systemd integration: readiness notification and journald detection.
//!
//! `paxos@.service` is `Type=notify`: systemd considers a replica started only when it
//! sends `READY=1`, which the driver does once the store is open and the listening port
//! is bound, and the driver sends `STOPPING=1` when it begins a clean shutdown. The
//! protocol (sd_notify(3)) is one datagram of `KEY=VALUE` lines sent to the Unix socket
//! named by `$NOTIFY_SOCKET`: a filesystem path (`/run/systemd/notify`), or a name in the
//! abstract namespace written with a leading `@`. The kernel attaches our credentials, so
//! systemd knows the datagram comes from the service's main process.
//!
//! Under systemd, stderr is a stream socket to journald, and systemd says so with
//! `$JOURNAL_STREAM=<device>:<inode>` of that socket. [`under_journald`] compares it with
//! stderr's own `fstat`, so a child that inherited the variable but not the socket (or
//! a daemon run from a shell inside a unit) is not fooled. Logging uses it to drop ANSI
//! colours and timestamps: journald adds its own.
//!
//! Invariants:
//! 1. Outside systemd (`$NOTIFY_SOCKET` unset or empty) [`notify`] does nothing.
//! 2. Nothing here panics or blocks: a send is one non-blocking datagram; failures are
//!    returned by [`try_notify`] and logged as a warning by [`notify`].
//!
//! Not implemented: the watchdog (`WATCHDOG=1`), file descriptor store, socket
//! activation. The unit does not ask for them.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Environment variable naming systemd's notification socket.
const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";
/// Environment variable carrying `<device>:<inode>` of the journald stream socket.
const JOURNAL_STREAM_ENV: &str = "JOURNAL_STREAM";

/// Tells systemd about a state change, e.g. `"READY=1"`, `"STOPPING=1"`,
/// `"STATUS=catching up"` (several may be joined by newlines).
///
/// A no-op when `$NOTIFY_SOCKET` is unset or empty. Never panics; a failure to send is
/// logged as a warning (systemd will then time the start out, which is the visible
/// symptom, so the warning says why).
pub fn notify(state: &str) {
    if let Err(error) = try_notify(state) {
        tracing::warn!(%error, state, "systemd notification failed");
    }
}

/// Like [`notify`], but says what happened: `Ok(true)` sent, `Ok(false)` not under
/// systemd (no `$NOTIFY_SOCKET`), `Err` when the socket is malformed or the send failed.
pub fn try_notify(state: &str) -> io::Result<bool> {
    notify_with(std::env::var_os(NOTIFY_SOCKET_ENV).as_deref(), state)
}

/// [`try_notify`] with the value of `$NOTIFY_SOCKET` passed in.
fn notify_with(socket: Option<&OsStr>, state: &str) -> io::Result<bool> {
    match socket {
        Some(socket) if !socket.is_empty() => notify_socket(socket, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` as one datagram to the socket `socket` names (`/path` or `@abstract`).
fn notify_socket(socket: &OsStr, state: &str) -> io::Result<()> {
    let addr = notify_addr(socket)?;
    let sender = UnixDatagram::unbound()?;
    sender.set_nonblocking(true)?;
    let sent = sender.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "short notification datagram: {sent} of {} bytes",
                state.len()
            ),
        ));
    }
    Ok(())
}

/// Parses `$NOTIFY_SOCKET`: an absolute path, or `@name` in the abstract namespace.
fn notify_addr(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(socket),
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{NOTIFY_SOCKET_ENV}={socket:?} is neither an absolute path nor @abstract"),
        )),
    }
}

/// True when stderr is the journald stream systemd connected us to: `$JOURNAL_STREAM`
/// holds the device and inode of stderr's own `fstat`. False outside systemd, when
/// stderr was redirected, or on any error.
pub fn under_journald() -> bool {
    stderr_is_journal_stream(std::env::var_os(JOURNAL_STREAM_ENV).as_deref())
}

/// [`under_journald`] with the value of `$JOURNAL_STREAM` passed in.
fn stderr_is_journal_stream(value: Option<&OsStr>) -> bool {
    let Some(value) = value else {
        return false;
    };
    let Some(expected) = value.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    match stderr_dev_ino() {
        Ok(actual) => actual == expected,
        Err(_) => false,
    }
}

/// Parses `<device>:<inode>`, both decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Device and inode of whatever fd 2 refers to (a duplicate of it is `fstat`ed).
fn stderr_dev_ino() -> io::Result<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    let fd = io::stderr().as_fd().try_clone_to_owned()?;
    let metadata = std::fs::File::from(fd).metadata()?;
    Ok((metadata.dev(), metadata.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// A unique name per test socket: pid plus a counter.
    fn unique(tag: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("paxos-systemd-test-{}-{tag}-{n}", std::process::id())
    }

    /// A socket file in the temp dir, removed on drop.
    struct PathSocket {
        path: PathBuf,
        socket: UnixDatagram,
    }

    impl PathSocket {
        fn bind(tag: &str) -> PathSocket {
            let path = std::env::temp_dir().join(unique(tag));
            let socket = UnixDatagram::bind(&path).expect("bind test socket");
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("set read timeout");
            PathSocket { path, socket }
        }
    }

    impl Drop for PathSocket {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("receive notification");
        String::from_utf8(buf[..n].to_vec()).expect("utf-8 notification")
    }

    #[test]
    fn sends_to_a_path_socket() {
        let listener = PathSocket::bind("path");
        notify_socket(listener.path.as_os_str(), "READY=1").expect("send");
        assert_eq!(recv(&listener.socket), "READY=1");
        notify_socket(listener.path.as_os_str(), "STOPPING=1\nSTATUS=bye").expect("send");
        assert_eq!(recv(&listener.socket), "STOPPING=1\nSTATUS=bye");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = unique("abstract");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract addr");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set read timeout");
        let env_value = OsString::from(format!("@{name}"));
        notify_socket(&env_value, "READY=1").expect("send");
        assert_eq!(recv(&listener), "READY=1");
    }

    #[test]
    fn rejects_malformed_or_dead_sockets_without_panicking() {
        let relative = notify_socket(OsStr::new("relative/path"), "READY=1");
        assert_eq!(
            relative.map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidInput)
        );
        let missing = std::env::temp_dir().join(unique("missing"));
        assert!(notify_socket(missing.as_os_str(), "READY=1").is_err());
        let nobody = OsString::from(format!("@{}", unique("nobody")));
        assert!(notify_socket(&nobody, "READY=1").is_err());
    }

    /// Tests pass the environment's value in rather than mutate the process
    /// environment, which other tests' threads may be reading.
    #[test]
    fn notify_follows_the_environment_value() {
        let listener = PathSocket::bind("env");
        assert!(notify_with(Some(listener.path.as_os_str()), "READY=1").expect("send"));
        assert_eq!(recv(&listener.socket), "READY=1");
        assert!(notify_with(Some(OsStr::new("not-a-socket")), "READY=1").is_err());
        assert!(!notify_with(Some(OsStr::new("")), "READY=1").expect("no-op"));
        assert!(!notify_with(None, "READY=1").expect("no-op"));
    }

    #[test]
    fn notify_never_panics_whatever_the_environment() {
        // Outside systemd this is a no-op; under a test runner started by systemd the
        // datagram comes from a process that is not the main PID and is ignored.
        notify("STATUS=unit test");
        let _ = try_notify("STATUS=unit test");
    }

    #[test]
    fn parses_journal_stream() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8:12345\n"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
        assert_eq!(parse_journal_stream("1:"), None);
        assert_eq!(parse_journal_stream(""), None);
    }

    #[test]
    fn under_journald_matches_stderr_exactly() {
        let (dev, ino) = stderr_dev_ino().expect("fstat stderr");
        let exact = OsString::from(format!("{dev}:{ino}"));
        assert!(stderr_is_journal_stream(Some(&exact)));
        let other = OsString::from(format!("{dev}:{}", ino.wrapping_add(1)));
        assert!(!stderr_is_journal_stream(Some(&other)));
        assert!(!stderr_is_journal_stream(Some(OsStr::new("garbage"))));
        assert!(!stderr_is_journal_stream(None));
    }
}
