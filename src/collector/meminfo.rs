//! `meminfo`: TODO (being written).

use super::{CollectError, Collector, Context};
use crate::metrics::Emitter;

pub struct Meminfo {}

impl Meminfo {
    pub fn new() -> Self {
        Meminfo {}
    }
}

impl Collector for Meminfo {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
