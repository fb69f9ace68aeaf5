//! `stat`: TODO (being written).

use super::{CollectError, Collector, Context};
use crate::metrics::Emitter;

pub struct Stat {}

impl Stat {
    pub fn new(_settings: &super::Settings) -> Self {
        Stat {}
    }
}

impl Collector for Stat {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
