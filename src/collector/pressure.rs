//! `pressure`: not written yet (issue #4). Emits nothing.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::Emitter;

pub const OPTIONS: &[Opt] = &[];

pub struct Pressure {}

impl Pressure {
    pub fn new(_settings: &Settings) -> Self {
        Pressure {}
    }
}

impl Collector for Pressure {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
