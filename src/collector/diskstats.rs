//! `diskstats`: TODO (being written).

use super::{CollectError, Collector, Context};
use crate::metrics::Emitter;

pub struct Diskstats {}

impl Diskstats {
    pub fn new(_settings: &super::Settings) -> Self {
        Diskstats {}
    }
}

impl Collector for Diskstats {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
