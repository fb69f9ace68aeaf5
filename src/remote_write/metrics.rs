//! Per-remote self-metrics (`cairn_remote_write_*`), updated by the sender
//! with relaxed atomics and rendered on /metrics by the agent's gatherer.
//!
//! Also holds the per-remote facts the status page and `cairn wal status`
//! show (failing or not, last error, blocked reason).
//!
//! Must never: take a lock or allocate on a successful send (the last
//! error's text is the one thing behind a lock, written only when an
//! attempt fails).

use crate::clock::now_ms;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::metrics::{Emitter, MetricType};

/// Why samples were dropped instead of sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The receiver refused them for good: the samples a 400 refused once
    /// isolated by splitting the request, a single sample answered 413,
    /// or a request answered with another final 4xx (not 401, 403, 404,
    /// 429) or a 1xx/3xx.
    Http4xx = 0,
    /// Older than `queue_config.sample_age_limit`.
    TooOld = 1,
    /// A collection whose timestamp is not after the previous one's
    /// (receivers reject those as out of order).
    OutOfOrder = 2,
    /// A Samples record that does not decode or has no SeriesSet.
    Undecodable = 3,
    /// Series `write_relabel_configs` drop (or make duplicates of an
    /// earlier series of the same set): left out on purpose by the user.
    WriteRelabel = 4,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::Http4xx,
        DropReason::TooOld,
        DropReason::OutOfOrder,
        DropReason::Undecodable,
        DropReason::WriteRelabel,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Http4xx => "http_4xx",
            DropReason::TooOld => "too_old",
            DropReason::OutOfOrder => "out_of_order",
            DropReason::Undecodable => "undecodable",
            DropReason::WriteRelabel => "write_relabel",
        }
    }
}

/// Why a remote is blocked: the receiver refuses every request until
/// someone fixes credentials or the URL. The data is kept meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// 401
    Unauthorized = 0,
    /// 403
    Forbidden = 1,
    /// 404
    NotFound = 2,
}

impl BlockReason {
    pub const ALL: [BlockReason; 3] = [
        BlockReason::Unauthorized,
        BlockReason::Forbidden,
        BlockReason::NotFound,
    ];
    pub fn from_status(code: u16) -> Option<Self> {
        match code {
            401 => Some(BlockReason::Unauthorized),
            403 => Some(BlockReason::Forbidden),
            404 => Some(BlockReason::NotFound),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::Unauthorized => "unauthorized",
            BlockReason::Forbidden => "forbidden",
            BlockReason::NotFound => "not_found",
        }
    }
}

/// How an attempt ended, for `cairn_remote_write_requests_total{status}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    Ok2xx = 0,
    Http4xx = 1,
    Http429 = 2,
    Http5xx = 3,
    Timeout = 4,
    Error = 5,
    /// 1xx/3xx as a final answer.
    Other = 6,
}

impl RequestOutcome {
    const ALL: [RequestOutcome; 7] = [
        RequestOutcome::Ok2xx,
        RequestOutcome::Http4xx,
        RequestOutcome::Http429,
        RequestOutcome::Http5xx,
        RequestOutcome::Timeout,
        RequestOutcome::Error,
        RequestOutcome::Other,
    ];
    pub fn from_status(code: u16) -> Self {
        match code {
            200..=299 => RequestOutcome::Ok2xx,
            429 => RequestOutcome::Http429,
            400..=499 => RequestOutcome::Http4xx,
            500..=599 => RequestOutcome::Http5xx,
            _ => RequestOutcome::Other,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok2xx => "2xx",
            RequestOutcome::Http4xx => "4xx",
            RequestOutcome::Http429 => "429",
            RequestOutcome::Http5xx => "5xx",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::Error => "error",
            RequestOutcome::Other => "other",
        }
    }
}

/// Upper bounds of the request duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug)]
pub struct SenderMetrics {
    remote: String,
    samples_sent: AtomicU64,
    samples_retried: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    bytes_sent: AtomicU64,
    requests: [AtomicU64; 7],
    /// Non-cumulative counts per bucket, the last one is +Inf.
    duration_buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_sum_us: AtomicU64,
    /// Wall-clock ms of the last 2xx; 0 = never.
    last_success_ms: AtomicI64,
    /// Oldest sample timestamp (ms) read but not yet sent; 0 = none.
    oldest_unsent_ms: AtomicI64,
    pending_samples: AtomicU64,
    /// Failed attempts since the last success.
    failures_in_a_row: AtomicU64,
    /// (wall-clock ms, what went wrong) of the last failed attempt.
    last_error: Mutex<Option<(i64, String)>>,
    samples_resent: AtomicU64,
    samples_unspooled: AtomicU64,
    /// 1 while blocked for that `BlockReason`.
    blocked: [AtomicU64; 3],
    /// Empty requests sent to a failing remote to notice its return.
    probes: AtomicU64,
}

impl SenderMetrics {
    pub fn new(remote: &str) -> Self {
        SenderMetrics {
            remote: remote.to_owned(),
            samples_sent: AtomicU64::new(0),
            samples_retried: AtomicU64::new(0),
            dropped: Default::default(),
            bytes_sent: AtomicU64::new(0),
            requests: Default::default(),
            duration_buckets: Default::default(),
            duration_sum_us: AtomicU64::new(0),
            last_success_ms: AtomicI64::new(0),
            oldest_unsent_ms: AtomicI64::new(0),
            pending_samples: AtomicU64::new(0),
            failures_in_a_row: AtomicU64::new(0),
            last_error: Mutex::new(None),
            samples_resent: AtomicU64::new(0),
            samples_unspooled: AtomicU64::new(0),
            blocked: Default::default(),
            probes: AtomicU64::new(0),
        }
    }

    pub fn remote(&self) -> &str {
        &self.remote
    }

    pub(crate) fn sent(&self, samples: u64, bytes: u64) {
        self.samples_sent.fetch_add(samples, Relaxed);
        self.bytes_sent.fetch_add(bytes, Relaxed);
        self.last_success_ms.store(now_ms(), Relaxed);
        self.failures_in_a_row.store(0, Relaxed);
    }

    /// An attempt failed (retried or dropped): `what` is the receiver's
    /// answer or the connection error, shown on the status page.
    pub fn failed(&self, what: &str) {
        self.failures_in_a_row.fetch_add(1, Relaxed);
        // Bounded: a receiver's error body can be long.
        let mut end = what.len().min(512);
        while !what.is_char_boundary(end) {
            end -= 1;
        }
        let mut g = match self.last_error.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Some((now_ms(), what[..end].to_owned()));
    }

    pub fn failures_in_a_row(&self) -> u64 {
        self.failures_in_a_row.load(Relaxed)
    }
    /// (wall-clock ms, text) of the last failed attempt.
    pub fn last_error(&self) -> Option<(i64, String)> {
        match self.last_error.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
    /// Wall-clock ms of the last accepted request; 0 = never.
    pub fn last_success_ms(&self) -> i64 {
        self.last_success_ms.load(Relaxed)
    }
    /// Samples read from the WAL and waiting to be sent (one window).
    pub fn pending_samples(&self) -> u64 {
        self.pending_samples.load(Relaxed)
    }

    /// Samples the receiver already had: refused as out of order, out of
    /// bounds or duplicate in a request that may have been delivered
    /// before (sent again after a stop or a lost answer).
    pub(crate) fn resent(&self, samples: u64) {
        self.samples_resent.fetch_add(samples, Relaxed);
    }

    /// The remote is blocked for `reason` (or for none).
    pub(crate) fn set_blocked(&self, reason: Option<BlockReason>) {
        for r in BlockReason::ALL {
            self.blocked[r as usize].store(u64::from(Some(r) == reason), Relaxed);
        }
    }

    pub fn blocked(&self) -> Option<BlockReason> {
        BlockReason::ALL
            .into_iter()
            .find(|r| self.blocked[*r as usize].load(Relaxed) != 0)
    }

    pub fn samples_resent(&self) -> u64 {
        self.samples_resent.load(Relaxed)
    }

    /// A probe went out (whatever its answer). Probes carry no samples and
    /// count nowhere else.
    pub(crate) fn probed(&self) {
        self.probes.fetch_add(1, Relaxed);
    }

    pub fn probes(&self) -> u64 {
        self.probes.load(Relaxed)
    }

    /// Samples delivered (or refused and counted) straight from the
    /// writer's queue while the WAL refused writes.
    pub(crate) fn unspooled(&self, samples: u64) {
        self.samples_unspooled.fetch_add(samples, Relaxed);
    }

    pub fn samples_unspooled(&self) -> u64 {
        self.samples_unspooled.load(Relaxed)
    }

    pub(crate) fn retried(&self, samples: u64) {
        self.samples_retried.fetch_add(samples, Relaxed);
    }

    pub(crate) fn dropped(&self, reason: DropReason, samples: u64) {
        self.dropped[reason as usize].fetch_add(samples, Relaxed);
    }

    pub(crate) fn request(&self, outcome: RequestOutcome, took: Duration) {
        self.requests[outcome as usize].fetch_add(1, Relaxed);
        let s = took.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|&ub| s <= ub)
            .unwrap_or(BUCKETS.len());
        self.duration_buckets[b].fetch_add(1, Relaxed);
        self.duration_sum_us
            .fetch_add(took.as_micros() as u64, Relaxed);
    }

    pub(crate) fn pending(&self, oldest_ts_ms: Option<i64>, samples: u64) {
        self.oldest_unsent_ms
            .store(oldest_ts_ms.unwrap_or(0), Relaxed);
        self.pending_samples.store(samples, Relaxed);
    }

    pub fn samples_sent(&self) -> u64 {
        self.samples_sent.load(Relaxed)
    }
    pub fn samples_retried(&self) -> u64 {
        self.samples_retried.load(Relaxed)
    }
    pub fn samples_dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Relaxed)
    }
    pub fn requests(&self, outcome: RequestOutcome) -> u64 {
        self.requests[outcome as usize].load(Relaxed)
    }

    /// Writes this remote's series; several remotes' metrics rendered into
    /// one `Emitter` share the families.
    pub fn render(&self, out: &mut Emitter) {
        let r = [("remote", self.remote.as_str())];
        let counter = |out: &mut Emitter, name: &str, help: &str, v: u64| {
            out.family(name, help, MetricType::Counter)
                .sample(&r, v as f64);
        };
        counter(
            out,
            "cairn_remote_write_samples_sent_total",
            "Samples the remote accepted (2xx).",
            self.samples_sent(),
        );
        counter(
            out,
            "cairn_remote_write_samples_retried_total",
            "Samples in attempts that failed and were retried.",
            self.samples_retried(),
        );
        counter(
            out,
            "cairn_remote_write_samples_resent_total",
            "Samples the remote refused as already written (out of order, out of bounds, duplicate) in a request sent again after a stop or a lost answer.",
            self.samples_resent(),
        );
        counter(
            out,
            "cairn_remote_write_probes_total",
            "Empty requests sent to a failing remote to notice its return (no samples; not in requests_total).",
            self.probes(),
        );
        counter(
            out,
            "cairn_remote_write_samples_unspooled_total",
            "Samples taken straight from memory, not from the WAL, while the WAL could not take them (a full or failing disk); each is also counted as sent or dropped.",
            self.samples_unspooled(),
        );
        {
            let mut f = out.family(
                "cairn_remote_write_blocked",
                "1 while the remote refuses every request for this reason (401 unauthorized, 403 forbidden, 404 not_found); the data is kept and retried at max_backoff.",
                MetricType::Gauge,
            );
            for reason in BlockReason::ALL {
                f.sample(
                    &[("reason", reason.as_str()), ("remote", &self.remote)],
                    self.blocked[reason as usize].load(Relaxed) as f64,
                );
            }
        }
        counter(
            out,
            "cairn_remote_write_bytes_sent_total",
            "Compressed request bytes the remote accepted.",
            self.bytes_sent(),
        );
        {
            let mut f = out.family(
                "cairn_remote_write_samples_dropped_total",
                "Samples not delivered on purpose, by reason.",
                MetricType::Counter,
            );
            for reason in DropReason::ALL {
                f.sample(
                    &[("reason", reason.as_str()), ("remote", &self.remote)],
                    self.samples_dropped(reason) as f64,
                );
            }
        }
        {
            let mut f = out.family(
                "cairn_remote_write_requests_total",
                "Send attempts by outcome (HTTP status class, timeout, connection error).",
                MetricType::Counter,
            );
            for o in RequestOutcome::ALL {
                f.sample(
                    &[("remote", &self.remote), ("status", o.as_str())],
                    self.requests(o) as f64,
                );
            }
        }
        // A histogram written as its three series families (the Emitter has
        // no histogram type); `histogram_quantile` works on `_bucket`.
        {
            let mut f = out.family(
                "cairn_remote_write_request_duration_seconds_bucket",
                "Duration of send attempts (histogram buckets).",
                MetricType::Untyped,
            );
            let mut cum = 0u64;
            for (i, b) in self.duration_buckets.iter().enumerate() {
                cum += b.load(Relaxed);
                let v = cum as f64;
                match BUCKETS.get(i) {
                    Some(ub) => f.sample_with(v, |l| {
                        l.label_display("le", ub).label("remote", &self.remote);
                    }),
                    None => f.sample(&[("le", "+Inf"), ("remote", &self.remote)], v),
                }
            }
            out.family(
                "cairn_remote_write_request_duration_seconds_count",
                "Duration of send attempts (histogram count).",
                MetricType::Untyped,
            )
            .sample(&r, cum as f64);
        }
        out.family(
            "cairn_remote_write_request_duration_seconds_sum",
            "Duration of send attempts (histogram sum, seconds).",
            MetricType::Untyped,
        )
        .sample(&r, self.duration_sum_us.load(Relaxed) as f64 / 1e6);
        let last = self.last_success_ms.load(Relaxed);
        out.family(
            "cairn_remote_write_last_send_timestamp_seconds",
            "When the remote last accepted a request (0: never since start).",
            MetricType::Gauge,
        )
        .sample(&r, last as f64 / 1000.0);
        let oldest = self.oldest_unsent_ms.load(Relaxed);
        let lag = if oldest == 0 {
            0.0
        } else {
            ((now_ms() - oldest) as f64 / 1000.0).max(0.0)
        };
        out.family(
            "cairn_remote_write_oldest_unsent_sample_age_seconds",
            "Age of the oldest sample read from the WAL and not yet delivered (0: caught up).",
            MetricType::Gauge,
        )
        .sample(&r, lag);
        out.family(
            "cairn_remote_write_pending_samples",
            "Samples read from the WAL and waiting to be sent.",
            MetricType::Gauge,
        )
        .sample(&r, self.pending_samples.load(Relaxed) as f64);
    }
}

impl crate::telemetry::Telemetry for SenderMetrics {
    fn render(&self, out: &mut Emitter) {
        SenderMetrics::render(self, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::render_text;

    #[test]
    fn status_facts_follow_failures_and_successes() {
        let m = SenderMetrics::new("central");
        assert_eq!(m.last_error(), None);
        m.failed("HTTP 503: overloaded");
        m.failed(&"é".repeat(400));
        assert_eq!(m.failures_in_a_row(), 2);
        let (at, text) = m.last_error().unwrap();
        assert!(at > 0);
        assert_eq!(text.len(), 512);
        m.sent(1, 1);
        assert_eq!(m.failures_in_a_row(), 0);
        assert!(m.last_success_ms() > 0);
        assert!(
            m.last_error().is_some(),
            "the last error stays for the record"
        );
        assert_eq!(m.blocked(), None);
        m.set_blocked(Some(BlockReason::Forbidden));
        assert_eq!(m.blocked(), Some(BlockReason::Forbidden));
        m.set_blocked(None);
        assert_eq!(m.blocked(), None);
    }

    #[test]
    fn renders_every_family_with_remote_label() {
        let m = SenderMetrics::new("central");
        m.sent(10, 100);
        m.dropped(DropReason::TooOld, 3);
        m.resent(4);
        m.probed();
        m.set_blocked(Some(BlockReason::Forbidden));
        m.request(RequestOutcome::Ok2xx, Duration::from_millis(7));
        m.request(RequestOutcome::Http5xx, Duration::from_secs(60));
        let m2 = SenderMetrics::new("backup");
        let mut e = Emitter::new();
        m.render(&mut e);
        m2.render(&mut e);
        let mut out = Vec::new();
        render_text(e.families(), &mut out);
        let text = String::from_utf8(out).unwrap();
        for want in [
            "cairn_remote_write_samples_sent_total{remote=\"central\"} 10\n",
            "cairn_remote_write_samples_sent_total{remote=\"backup\"} 0\n",
            "cairn_remote_write_samples_dropped_total{reason=\"too_old\",remote=\"central\"} 3\n",
            "cairn_remote_write_requests_total{remote=\"central\",status=\"5xx\"} 1\n",
            "cairn_remote_write_request_duration_seconds_bucket{le=\"0.005\",remote=\"central\"} 0\n",
            "cairn_remote_write_request_duration_seconds_bucket{le=\"0.01\",remote=\"central\"} 1\n",
            "cairn_remote_write_request_duration_seconds_bucket{le=\"+Inf\",remote=\"central\"} 2\n",
            "cairn_remote_write_request_duration_seconds_count{remote=\"central\"} 2\n",
            "cairn_remote_write_bytes_sent_total{remote=\"central\"} 100\n",
            "cairn_remote_write_oldest_unsent_sample_age_seconds{remote=\"central\"} 0\n",
            "cairn_remote_write_samples_resent_total{remote=\"central\"} 4\n",
            "cairn_remote_write_probes_total{remote=\"central\"} 1\n",
            "cairn_remote_write_probes_total{remote=\"backup\"} 0\n",
            "cairn_remote_write_blocked{reason=\"forbidden\",remote=\"central\"} 1\n",
            "cairn_remote_write_blocked{reason=\"unauthorized\",remote=\"central\"} 0\n",
            "cairn_remote_write_blocked{reason=\"not_found\",remote=\"backup\"} 0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE cairn_remote_write_samples_sent_total")
                .count(),
            1
        );
    }
}
