//! `kernel_hung`: not written yet (issue #4). Emits nothing.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::Emitter;

pub const OPTIONS: &[Opt] = &[];

pub struct KernelHung {}

impl KernelHung {
    pub fn new(_settings: &Settings) -> Self {
        KernelHung {}
    }
}

impl Collector for KernelHung {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
