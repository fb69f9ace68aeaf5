//! `timex`: the kernel's NTP discipline state from adjtimex(2), as
//! node_exporter 1.5.0's node_timex_* families (same scaling: offset and
//! pps jitter are nanoseconds when STA_NANO is set, microseconds otherwise;
//! maxerror, esterror and tick are always microseconds; freq, ppsfreq and
//! stabil are ppm with a 16-bit fraction).
//!
//! Must never: change the clock. The call is made with `modes = 0`, which
//! only reads; there is no file to read (node_exporter reads none either).
//! A refused call (seccomp, EPERM) is 1.5.0's ErrNoData: success 0.
//! Known difference: upstream master adds node_timex_offset_overflow_total;
//! 1.5.0 does not, so neither does cairn.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

/// The clock is not synchronized (adjtimex's return value).
const TIME_ERROR: i32 = 5;
/// Offset and jitter are in nanoseconds rather than microseconds.
const STA_NANO: i64 = 0x2000;
const NANOSECONDS: f64 = 1_000_000_000.0;
const MICROSECONDS: f64 = 1_000_000.0;
/// See NOTES in adjtimex(2).
const PPM16FRAC: f64 = 1_000_000.0 * 65536.0;

/// What one adjtimex(2) call returned, widened to i64 so the arithmetic is
/// the same on 32- and 64-bit targets (and testable without a syscall).
#[derive(Debug, Default, Clone, Copy)]
pub struct Reading {
    pub state: i32,
    pub offset: i64,
    pub freq: i64,
    pub maxerror: i64,
    pub esterror: i64,
    pub status: i64,
    pub constant: i64,
    pub tick: i64,
    pub ppsfreq: i64,
    pub jitter: i64,
    pub shift: i64,
    pub stabil: i64,
    pub jitcnt: i64,
    pub calcnt: i64,
    pub errcnt: i64,
    pub stbcnt: i64,
    pub tai: i64,
}

// The casts widen c_long/c_int, which differ per target.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn read_adjtimex() -> std::io::Result<Reading> {
    // SAFETY: timex is plain old data; all-zero is a valid value, and
    // modes = 0 asks the kernel to only fill it in.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the call.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Reading {
        state,
        offset: tx.offset as i64,
        freq: tx.freq as i64,
        maxerror: tx.maxerror as i64,
        esterror: tx.esterror as i64,
        status: tx.status as i64,
        constant: tx.constant as i64,
        tick: tx.tick as i64,
        ppsfreq: tx.ppsfreq as i64,
        jitter: tx.jitter as i64,
        shift: tx.shift as i64,
        stabil: tx.stabil as i64,
        jitcnt: tx.jitcnt as i64,
        calcnt: tx.calcnt as i64,
        errcnt: tx.errcnt as i64,
        stbcnt: tx.stbcnt as i64,
        tai: tx.tai as i64,
    })
}

/// Writes one reading as node_exporter 1.5.0's families.
pub fn emit(r: &Reading, out: &mut Emitter) {
    use MetricType::{Counter, Gauge};
    let divisor = if r.status & STA_NANO != 0 {
        NANOSECONDS
    } else {
        MICROSECONDS
    };
    let sync = if r.state == TIME_ERROR { 0.0 } else { 1.0 };
    let families: [(&str, &str, MetricType, f64); 17] = [
        (
            "node_timex_sync_status",
            "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
            Gauge,
            sync,
        ),
        (
            "node_timex_offset_seconds",
            "Time offset in between local system and reference clock.",
            Gauge,
            r.offset as f64 / divisor,
        ),
        (
            "node_timex_frequency_adjustment_ratio",
            "Local clock frequency adjustment.",
            Gauge,
            1.0 + r.freq as f64 / PPM16FRAC,
        ),
        (
            "node_timex_maxerror_seconds",
            "Maximum error in seconds.",
            Gauge,
            r.maxerror as f64 / MICROSECONDS,
        ),
        (
            "node_timex_estimated_error_seconds",
            "Estimated error in seconds.",
            Gauge,
            r.esterror as f64 / MICROSECONDS,
        ),
        (
            "node_timex_status",
            "Value of the status array bits.",
            Gauge,
            r.status as f64,
        ),
        (
            "node_timex_loop_time_constant",
            "Phase-locked loop time constant.",
            Gauge,
            r.constant as f64,
        ),
        (
            "node_timex_tick_seconds",
            "Seconds between clock ticks.",
            Gauge,
            r.tick as f64 / MICROSECONDS,
        ),
        (
            "node_timex_pps_frequency_hertz",
            "Pulse per second frequency.",
            Gauge,
            r.ppsfreq as f64 / PPM16FRAC,
        ),
        (
            "node_timex_pps_jitter_seconds",
            "Pulse per second jitter.",
            Gauge,
            r.jitter as f64 / divisor,
        ),
        (
            "node_timex_pps_shift_seconds",
            "Pulse per second interval duration.",
            Gauge,
            r.shift as f64,
        ),
        (
            "node_timex_pps_stability_hertz",
            "Pulse per second stability, average of recent frequency changes.",
            Gauge,
            r.stabil as f64 / PPM16FRAC,
        ),
        (
            "node_timex_pps_jitter_total",
            "Pulse per second count of jitter limit exceeded events.",
            Counter,
            r.jitcnt as f64,
        ),
        (
            "node_timex_pps_calibration_total",
            "Pulse per second count of calibration intervals.",
            Counter,
            r.calcnt as f64,
        ),
        (
            "node_timex_pps_error_total",
            "Pulse per second count of calibration errors.",
            Counter,
            r.errcnt as f64,
        ),
        (
            "node_timex_pps_stability_exceeded_total",
            "Pulse per second count of stability limit exceeded events.",
            Counter,
            r.stbcnt as f64,
        ),
        (
            "node_timex_tai_offset_seconds",
            "International Atomic Time (TAI) offset.",
            Gauge,
            r.tai as f64,
        ),
    ];
    for (name, help, kind, v) in families {
        out.single(name, help, kind, v);
    }
}

pub struct Timex {}

impl Timex {
    pub fn new(_settings: &Settings) -> Self {
        Timex {}
    }
}

impl Collector for Timex {
    fn update(&mut self, _ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        match read_adjtimex() {
            Ok(r) => {
                emit(&r, out);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(
                CollectError::NoData(format!("not collecting timex metrics: {e}")),
            ),
            Err(e) => Err(CollectError::Other(format!(
                "failed to retrieve adjtimex stats: {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::render_text;

    fn render(r: &Reading) -> String {
        let mut e = Emitter::new();
        emit(r, &mut e);
        let mut fams: Vec<_> = e.families().collect();
        fams.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        render_text(fams, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
            .parse()
            .unwrap()
    }

    /// An unsynchronised VM (what this host reports): the exact values
    /// node_exporter 1.5.0 gave here.
    #[test]
    fn timex_unsynchronised_host() {
        let r = Reading {
            state: TIME_ERROR,
            status: 64, // STA_UNSYNC
            maxerror: 16_000_000,
            esterror: 16_000_000,
            constant: 2,
            tick: 10_000,
            ..Reading::default()
        };
        let t = render(&r);
        assert_eq!(t.lines().filter(|l| l.starts_with("# TYPE")).count(), 17);
        for (name, v) in [
            ("node_timex_sync_status", 0.0),
            ("node_timex_status", 64.0),
            ("node_timex_maxerror_seconds", 16.0),
            ("node_timex_estimated_error_seconds", 16.0),
            ("node_timex_loop_time_constant", 2.0),
            ("node_timex_tick_seconds", 0.01),
            ("node_timex_frequency_adjustment_ratio", 1.0),
            ("node_timex_offset_seconds", 0.0),
        ] {
            assert_eq!(value(&t, name), v, "{name}");
        }
        assert!(t.contains("# TYPE node_timex_pps_jitter_total counter\n"));
        assert!(t.contains("# TYPE node_timex_offset_seconds gauge\n"));
    }

    /// chrony sets STA_NANO: offset and jitter are then nanoseconds, while
    /// maxerror/esterror/tick stay microseconds.
    #[test]
    fn timex_nano_vs_micro_scaling() {
        let base = Reading {
            state: 0,
            offset: -1500,
            jitter: 250,
            maxerror: 1500,
            freq: -1_234_567,
            ppsfreq: 65536,
            stabil: 32768,
            shift: 2,
            tai: 37,
            ..Reading::default()
        };
        let micro = render(&base);
        assert_eq!(value(&micro, "node_timex_sync_status"), 1.0);
        assert_eq!(value(&micro, "node_timex_offset_seconds"), -0.0015);
        assert_eq!(value(&micro, "node_timex_pps_jitter_seconds"), 0.00025);
        assert_eq!(value(&micro, "node_timex_maxerror_seconds"), 0.0015);
        assert_eq!(
            value(&micro, "node_timex_frequency_adjustment_ratio"),
            1.0 + -1_234_567.0 / PPM16FRAC
        );
        assert_eq!(value(&micro, "node_timex_pps_frequency_hertz"), 0.000001);
        assert_eq!(value(&micro, "node_timex_pps_stability_hertz"), 0.0000005);
        assert_eq!(value(&micro, "node_timex_pps_shift_seconds"), 2.0);
        assert_eq!(value(&micro, "node_timex_tai_offset_seconds"), 37.0);

        let nano = render(&Reading {
            status: STA_NANO | 0x1, // STA_PLL
            ..base
        });
        assert_eq!(value(&nano, "node_timex_offset_seconds"), -0.0000015);
        assert_eq!(value(&nano, "node_timex_pps_jitter_seconds"), 0.00000025);
        assert_eq!(value(&nano, "node_timex_maxerror_seconds"), 0.0015);
        assert_eq!(value(&nano, "node_timex_status"), 8193.0);
    }

    /// The real syscall on this host: read-only and always answers.
    #[test]
    fn timex_live_call_reads() {
        let t = crate::collector::testutil::render(
            &mut Timex::new(&Settings::default()),
            &Context::default(),
        )
        .unwrap();
        assert!(value(&t, "node_timex_tick_seconds") > 0.0, "{t}");
    }
}
