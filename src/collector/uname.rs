//! `uname`: node_uname_info from the uname(2) syscall, as node_exporter 1.5.0
//! does on Linux (it does not read /proc/sys/kernel/*).
//!
//! Must never: cache the answer (the hostname and domain name can change
//! while we run), or panic on fields that are not valid UTF-8 (they are
//! converted lossily instead).

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::{CollectError, Collector, Context};
use crate::metrics::{Emitter, MetricType};

pub struct Uname {}

impl Default for Uname {
    fn default() -> Self {
        Self::new()
    }
}

impl Uname {
    pub fn new() -> Self {
        Uname {}
    }
}

/// Borrowed when the field is valid UTF-8 (always, in practice), so the
/// steady state allocates nothing.
fn lossy(s: &OsStr) -> Cow<'_, str> {
    String::from_utf8_lossy(s.as_bytes())
}

impl Collector for Uname {
    // The syscall reports the running kernel, not a fixture root, so the
    // context is not consulted (node_exporter ignores --path.* here too).
    fn update(&mut self, _ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let u = nix::sys::utsname::uname()
            .map_err(|e| CollectError::Other(format!("uname(2) failed: {e}")))?;
        let (domainname, machine, nodename) = (
            lossy(u.domainname()),
            lossy(u.machine()),
            lossy(u.nodename()),
        );
        let (release, sysname, version) =
            (lossy(u.release()), lossy(u.sysname()), lossy(u.version()));
        // Label order is client_golang's (sorted by name).
        out.family(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
            MetricType::Gauge,
        )
        .sample(
            &[
                ("domainname", &*domainname),
                ("machine", &*machine),
                ("nodename", &*nodename),
                ("release", &*release),
                ("sysname", &*sysname),
                ("version", &*version),
            ],
            1.0,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::render;

    #[test]
    fn real_syscall_gives_linux_with_labels_in_order() {
        let text = render(&mut Uname::new(), &Context::default()).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("# HELP node_uname_info Labeled system information as provided by the uname system call.")
        );
        assert_eq!(lines.next(), Some("# TYPE node_uname_info gauge"));
        let sample = lines.next().unwrap();
        assert_eq!(lines.next(), None, "{text}");
        assert!(
            sample.starts_with("node_uname_info{domainname=\""),
            "{sample}"
        );
        assert!(sample.ends_with("\"} 1"), "{sample}");
        let pos = |l: &str| sample.find(&format!(",{l}=\"")).unwrap_or(usize::MAX);
        let order = [
            pos("machine"),
            pos("nodename"),
            pos("release"),
            pos("sysname"),
            pos("version"),
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{sample}");
        assert!(order[4] != usize::MAX, "{sample}");
        assert!(sample.contains(",sysname=\"Linux\","), "{sample}");
        // A non-empty machine and release, as any Linux kernel reports.
        assert!(!sample.contains("machine=\"\""), "{sample}");
        assert!(!sample.contains("release=\"\""), "{sample}");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let raw = OsStr::from_bytes(b"host\xffname");
        assert_eq!(lossy(raw), "host\u{FFFD}name");
        assert!(matches!(lossy(OsStr::new("vm")), Cow::Borrowed("vm")));
    }
}
