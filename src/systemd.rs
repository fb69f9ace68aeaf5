//! The little cairn says to systemd: `READY=1`, `WATCHDOG=1`, `STOPPING=1`,
//! `RELOADING=1`, over `$NOTIFY_SOCKET` (sd_notify's protocol: one datagram
//! of `KEY=VALUE` lines to a unix socket, possibly in the abstract
//! namespace). Written by hand: the protocol is a dozen lines, a crate for it
//! would bring more than it saves.
//!
//! Must never: fail the agent. Without systemd (no `$NOTIFY_SOCKET`) every
//! call is a no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` to systemd if it is listening; errors are logged at debug.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let res = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&path)?,
        };
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    })();
    if let Err(e) = res {
        tracing::debug!(error = %e, socket = %path, "sd_notify failed");
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, if systemd set
/// it for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_a_listening_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // The variable is process-wide: this is the only test that sets it.
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify("READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
