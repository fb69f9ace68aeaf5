//! `thermal_zone`: not written yet (issue #4). Emits nothing.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::Emitter;

pub const OPTIONS: &[Opt] = &[];

pub struct ThermalZone {}

impl ThermalZone {
    pub fn new(_settings: &Settings) -> Self {
        ThermalZone {}
    }
}

impl Collector for ThermalZone {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
