//! `cpu`: TODO (being written).

use super::{CollectError, Collector, Context};
use crate::metrics::Emitter;

pub struct Cpu {}

impl Cpu {
    pub fn new(_settings: &super::Settings) -> Self {
        Cpu {}
    }
}

impl Collector for Cpu {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
