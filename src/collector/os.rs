//! `os`: TODO (being written).

use super::{CollectError, Collector, Context};
use crate::metrics::Emitter;

pub struct Os {}

impl Os {
    pub fn new() -> Self {
        Os {}
    }
}

impl Collector for Os {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
