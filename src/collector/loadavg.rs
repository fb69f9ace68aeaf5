//! `loadavg`: node_load1, node_load5, node_load15 from /proc/loadavg.
//! Must never: report a partial set (a malformed file fails the collector).

use super::{read_into, CollectError, Collector, Context};
use crate::metrics::{Emitter, MetricType};

pub struct Loadavg {
    buf: String,
}

impl Loadavg {
    pub fn new() -> Self {
        Loadavg {
            buf: String::with_capacity(64),
        }
    }
}

impl Collector for Loadavg {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("loadavg");
        read_into(&path, &mut self.buf)?;
        let mut fields = self.buf.split_ascii_whitespace();
        let mut next = || -> Result<f64, CollectError> {
            fields
                .next()
                .ok_or_else(|| CollectError::parse(&path, "fewer than 3 fields"))?
                .parse::<f64>()
                .map_err(|e| CollectError::parse(&path, e.to_string()))
        };
        let (l1, l5, l15) = (next()?, next()?, next()?);
        out.single("node_load1", "1m load average.", MetricType::Gauge, l1);
        out.single("node_load5", "5m load average.", MetricType::Gauge, l5);
        out.single("node_load15", "15m load average.", MetricType::Gauge, l15);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    #[test]
    fn parses_fixture() {
        let ctx = fixture_ctx("basic");
        let text = render(&mut Loadavg::new(), &ctx).unwrap();
        assert!(text.contains("node_load1 0.21\n"), "{text}");
        assert!(text.contains("node_load5 0.37\n"), "{text}");
        assert!(text.contains("node_load15 0.39\n"), "{text}");
    }

    #[test]
    fn truncated_file_fails_the_collector() {
        let ctx = fixture_ctx("truncated");
        assert!(render(&mut Loadavg::new(), &ctx).is_err());
    }
}
