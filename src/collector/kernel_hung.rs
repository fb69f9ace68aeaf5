//! `kernel_hung`: node_kernel_hung_tasks_total from
//! /proc/sys/kernel/hung_task_detect_count (upstream master's collector;
//! node_exporter 1.5.0 has none).
//!
//! Must never: report a count the kernel does not keep. Without the file
//! (no CONFIG_DETECT_HUNG_TASK, or a kernel from before the counter was
//! added in 2024) upstream returns ErrNoData, reported as success 0; so does this.

use super::{read_optional, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

pub struct KernelHung {
    buf: String,
}

impl KernelHung {
    pub fn new(_settings: &Settings) -> Self {
        KernelHung {
            buf: String::with_capacity(32),
        }
    }
}

impl Collector for KernelHung {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("sys/kernel/hung_task_detect_count");
        if !read_optional(&path, &mut self.buf)? {
            return Err(CollectError::NoData(format!(
                "{} does not exist",
                path.display()
            )));
        }
        let n = self
            .buf
            .trim()
            .parse::<u64>()
            .map_err(|e| CollectError::parse(&path, e.to_string()))?;
        out.single(
            "node_kernel_hung_tasks_total",
            "Total number of tasks that have been detected as hung since the system booted.",
            MetricType::Counter,
            n as f64,
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
            &mut KernelHung::new(&Settings::default()),
            &fixture_ctx(&format!("kernel_hung/{case}")),
        )
    }

    #[test]
    fn kernel_hung_normal() {
        assert_eq!(
            run("normal").unwrap(),
            "# HELP node_kernel_hung_tasks_total Total number of tasks that have been detected as hung since the system booted.\n\
             # TYPE node_kernel_hung_tasks_total counter\n\
             node_kernel_hung_tasks_total 3\n"
        );
    }

    #[test]
    fn kernel_hung_missing_is_no_data() {
        let e = run("missing").unwrap_err();
        assert!(e.to_string().starts_with("no data"), "{e}");
    }

    #[test]
    fn kernel_hung_malformed_fails() {
        assert!(run("malformed").is_err());
    }

    #[test]
    fn kernel_hung_unreadable_fails_not_no_data() {
        let e = run("unreadable").unwrap_err();
        assert!(!e.to_string().starts_with("no data"), "{e}");
    }
}
