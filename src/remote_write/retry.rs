//! What to do after a send attempt, and how long to wait before the next.
//!
//! Owns: the retry rules of the Remote-Write spec (5xx, 429, timeouts and
//! connection errors are retried), what cairn does with final refusals
//! (400: isolate the refused samples; 413: split; 401/403/404: keep the
//! data, blocked), exponential backoff with jitter, and `Retry-After`
//! parsing; while a remote is failing, how often to probe it with an empty
//! request (so a returned receiver is noticed in about a second rather than
//! after a backoff step of up to `max_backoff`), the jittered start of the
//! drain after a probe succeeds, and the `max_samples_per_second` token
//! bucket. Must never: send the same refused batch again unchanged (a
//! poison batch would stall the remote) — except while blocked, where the
//! fix is outside cairn — or wait longer than `max_backoff`.

use super::metrics::BlockReason;

use std::time::{Duration, Instant, SystemTime};

/// While a remote fails and the next backoff wait is longer than this, it
/// is probed about this often (±`PROBE_JITTER`).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// ±25 %: thousands of agents that lost the same receiver do not probe it
/// in lockstep.
const PROBE_JITTER: f64 = 0.25;
/// A probe is an empty request: a receiver that does not answer it this
/// fast is not ready for the backlog either.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a probe succeeds the resend starts within this (uniformly
/// jittered), so a fleet that noticed the receiver in the same second does
/// not drain its backlogs into it in the same millisecond.
pub const DRAIN_START_JITTER: Duration = Duration::from_secs(1);

/// The wait before the next probe: `PROBE_EVERY` ±`PROBE_JITTER`.
pub fn probe_interval() -> Duration {
    PROBE_EVERY.mul_f64(1.0 - PROBE_JITTER + 2.0 * PROBE_JITTER * fastrand::f64())
}

/// The delay before the drain starts once a probe succeeded: uniform in
/// `[0, DRAIN_START_JITTER)`.
pub fn drain_start_delay() -> Duration {
    DRAIN_START_JITTER.mul_f64(fastrand::f64())
}

/// A snappy-compressed `WriteRequest` with no timeseries (an empty protobuf
/// message is zero bytes; snappy's block format writes its length, 0, as a
/// one-byte varint). Prometheus 2.42 and VictoriaMetrics answer it 204
/// without storing anything.
pub const EMPTY_REQUEST: &[u8] = &[0x00];

/// Whether probing may shorten a retry wait of `d`: only a computed
/// backoff step (a receiver's `Retry-After` is honoured to the end) longer
/// than the probe period.
pub fn probes_for(d: Duration, retry_after: Option<Duration>) -> bool {
    retry_after.is_none() && d > PROBE_EVERY
}

/// `queue_config.max_samples_per_second`: a token bucket over the samples
/// sent, holding one request's worth (`burst`), refilled at `rate` per
/// second. A request may take more than is in the bucket; the debt is
/// what the caller waits before sending it, so over any span at most
/// `burst + rate × span` samples go out.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket; `rate` must be > 0.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            at: now,
        }
    }

    /// Takes `n` samples' tokens at `now`; returns how long to wait before
    /// sending them (zero when the bucket held enough).
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The decision for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Success,
    /// Dropped for good (counted `http_4xx`), the queue moves on.
    Drop,
    /// Send the same batch again after the backoff (or `retry_after`).
    Retry {
        retry_after: Option<Duration>,
    },
    /// 400: some sample of the batch is refused. Split it until the
    /// refused samples are isolated, deliver the rest.
    Refused,
    /// 413: too large; send each half.
    Split,
    /// 401, 403, 404: nothing will be accepted until credentials or the
    /// URL are fixed. Keep the batch, retry at `max_backoff`.
    Blocked(BlockReason),
}

pub fn decide(status: u16, retry_after: Option<Duration>) -> Decision {
    match status {
        200..=299 => Decision::Success,
        429 | 500..=599 => Decision::Retry { retry_after },
        400 => Decision::Refused,
        413 => Decision::Split,
        401 | 403 | 404 => match BlockReason::from_status(status) {
            Some(r) => Decision::Blocked(r),
            None => Decision::Drop,
        },
        // 1xx/3xx as a final answer (redirects are not followed: a POST
        // turned into a GET would lose its body) and other 4xx (405, 409,
        // 415, 422...: the endpoint refuses the protocol itself, so
        // splitting would only multiply requests): the receiver will
        // never take this batch.
        _ => Decision::Drop,
    }
}

/// Whether a 400's body says the receiver already holds newer or equal
/// data for a series (Prometheus: "out of order sample", "out of bounds",
/// "duplicate sample for timestamp"; also "too old"). For a batch that may
/// have been delivered before, that means it was.
pub fn already_written(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    [
        "out of order",
        "out-of-order",
        "out of bounds",
        "duplicate sample",
        "too old",
    ]
    .iter()
    .any(|k| b.contains(k))
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff from `min` doubling to `max`, with "equal jitter"
/// (a delay between half and all of the current step) so many agents
/// restarted by one outage do not hit the receiver in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    cur: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Backoff { min, max, cur: min }
    }

    pub fn reset(&mut self) {
        self.cur = self.min;
    }

    /// The delay before the next attempt. A `Retry-After` from the
    /// receiver wins over the computed step, capped at `max`.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let step = self.cur;
        self.cur = (self.cur * 2).min(self.max);
        if let Some(ra) = retry_after {
            return ra.clamp(self.min, self.max);
        }
        let half = step / 2;
        let jitter = Duration::from_nanos(fastrand::u64(
            0..=half.as_nanos().min(u64::MAX as u128) as u64,
        ));
        (half + jitter).max(self.min).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_spec() {
        assert_eq!(decide(200, None), Decision::Success);
        assert_eq!(decide(204, None), Decision::Success);
        for s in [500, 502, 503, 599] {
            assert_eq!(
                decide(s, None),
                Decision::Retry { retry_after: None },
                "{s}"
            );
        }
        let ra = Some(Duration::from_secs(2));
        assert_eq!(decide(429, ra), Decision::Retry { retry_after: ra });
        for s in [405, 409, 415, 422, 301, 302, 100] {
            assert_eq!(decide(s, None), Decision::Drop, "{s}");
        }
        assert_eq!(decide(400, None), Decision::Refused);
        assert_eq!(decide(413, None), Decision::Split);
        assert_eq!(
            decide(401, None),
            Decision::Blocked(BlockReason::Unauthorized)
        );
        assert_eq!(decide(403, None), Decision::Blocked(BlockReason::Forbidden));
        assert_eq!(decide(404, None), Decision::Blocked(BlockReason::NotFound));
    }

    #[test]
    fn already_written_matches_prometheus_messages() {
        for b in [
            "out of order sample",
            "out of bounds",
            "duplicate sample for timestamp",
            "Out Of Order Sample",
        ] {
            assert!(already_written(b), "{b}");
        }
        for b in ["", "invalid labels", "snappy: corrupt input"] {
            assert!(!already_written(b), "{b}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784111777);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn empty_request_is_an_empty_write_request() {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(EMPTY_REQUEST)
            .unwrap();
        assert!(raw.is_empty());
        use prost::Message;
        let req = super::super::proto::WriteRequest::decode(&raw[..]).unwrap();
        assert!(req.timeseries.is_empty());
        assert_eq!(
            snap::raw::Encoder::new().compress_vec(&[]).unwrap(),
            EMPTY_REQUEST
        );
    }

    #[test]
    fn probe_and_drain_delays_stay_in_their_ranges() {
        for _ in 0..1000 {
            let p = probe_interval();
            assert!(
                p >= PROBE_EVERY.mul_f64(0.75) && p <= PROBE_EVERY.mul_f64(1.25),
                "{p:?}"
            );
            assert!(drain_start_delay() < DRAIN_START_JITTER);
        }
        assert!(probes_for(Duration::from_secs(8), None));
        assert!(!probes_for(PROBE_EVERY, None));
        assert!(!probes_for(
            Duration::from_secs(8),
            Some(Duration::from_secs(8))
        ));
    }

    #[test]
    fn token_bucket_holds_the_rate() {
        let (rate, burst) = (1000u64, 300u64);
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate, burst, t0);
        let mut now = t0;
        let mut sent = 0u64;
        // A sender that sends whenever the bucket lets it, for 10 s.
        while now - t0 < Duration::from_secs(10) {
            now += b.take(burst, now);
            sent += burst;
        }
        let span = (now - t0).as_secs_f64();
        // (+1: float rounding of the summed waits.)
        assert!(
            sent as f64 <= burst as f64 + rate as f64 * span + 1.0,
            "{sent} in {span}"
        );
        assert!(sent as f64 >= rate as f64 * span, "{sent} in {span}");
        // Idle time refills no more than one burst.
        now += Duration::from_secs(60);
        assert_eq!(b.take(burst, now), Duration::ZERO);
        assert!(b.take(burst, now) > Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let (min, max) = (Duration::from_millis(30), Duration::from_millis(1000));
        let mut b = Backoff::new(min, max);
        let mut steps = Vec::new();
        for _ in 0..10 {
            steps.push(b.next(None));
        }
        for (i, d) in steps.iter().enumerate() {
            let full = (min * 2u32.pow(i as u32)).min(max);
            assert!(
                *d >= (full / 2).max(min) && *d <= full,
                "step {i}: {d:?} vs {full:?}"
            );
        }
        assert_eq!(b.next(Some(Duration::from_secs(3600))), max);
        assert_eq!(b.next(Some(Duration::ZERO)), min);
        b.reset();
        assert!(b.next(None) <= min);
    }
}
