//! `time`: TODO (being written).

use super::{CollectError, Collector, Context};
use crate::metrics::Emitter;

pub struct Time {}

impl Time {
    pub fn new() -> Self {
        Time {}
    }
}

impl Collector for Time {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
