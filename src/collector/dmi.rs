//! `dmi`: not written yet (issue #4). Emits nothing.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::Emitter;

pub const OPTIONS: &[Opt] = &[];

pub struct Dmi {}

impl Dmi {
    pub fn new(_settings: &Settings) -> Self {
        Dmi {}
    }
}

impl Collector for Dmi {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
