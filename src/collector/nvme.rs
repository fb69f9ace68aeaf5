//! `nvme`: not written yet (issue #4). Emits nothing.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::Emitter;

pub const OPTIONS: &[Opt] = &[];

pub struct Nvme {}

impl Nvme {
    pub fn new(_settings: &Settings) -> Self {
        Nvme {}
    }
}

impl Collector for Nvme {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
