//! `entropy`: node_entropy_available_bits and node_entropy_pool_size_bits
//! from /proc/sys/kernel/random/{entropy_avail,poolsize}.
//!
//! Must never: report one of the pair without the other (node_exporter 1.5.0
//! fails the collector when either file is missing or unparsable), or read
//! /dev/random itself.
//!
//! Known difference: 1.5.0 (procfs' KernelRandom) also parses three
//! threshold files it never exports, so a garbled `urandom_min_reseed_secs`
//! fails it; cairn reads only the two files it reports.

use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

pub struct Entropy {
    buf: String,
}

impl Entropy {
    pub fn new(_settings: &Settings) -> Self {
        Entropy {
            buf: String::with_capacity(32),
        }
    }

    fn read_u64(&mut self, ctx: &Context, rel: &str) -> Result<u64, CollectError> {
        let path = ctx.proc_path(rel);
        read_into(&path, &mut self.buf)?;
        self.buf
            .trim()
            .parse::<u64>()
            .map_err(|e| CollectError::parse(&path, e.to_string()))
    }
}

impl Collector for Entropy {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let avail = self.read_u64(ctx, "sys/kernel/random/entropy_avail")?;
        let pool = self.read_u64(ctx, "sys/kernel/random/poolsize")?;
        out.single(
            "node_entropy_available_bits",
            "Bits of available entropy.",
            MetricType::Gauge,
            avail as f64,
        );
        out.single(
            "node_entropy_pool_size_bits",
            "Bits of entropy pool.",
            MetricType::Gauge,
            pool as f64,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str) -> Result<String, CollectError> {
        render(
            &mut Entropy::new(&Settings::default()),
            &fixture_ctx(&format!("entropy/{case}")),
        )
    }

    #[test]
    fn entropy_normal() {
        assert_eq!(
            run("normal").unwrap(),
            "# HELP node_entropy_available_bits Bits of available entropy.\n\
             # TYPE node_entropy_available_bits gauge\n\
             node_entropy_available_bits 256\n\
             # HELP node_entropy_pool_size_bits Bits of entropy pool.\n\
             # TYPE node_entropy_pool_size_bits gauge\n\
             node_entropy_pool_size_bits 4096\n"
        );
    }

    #[test]
    fn entropy_missing_poolsize_fails() {
        assert!(run("no_poolsize").is_err());
    }

    #[test]
    fn entropy_malformed_fails() {
        assert!(run("malformed").is_err());
    }
}
