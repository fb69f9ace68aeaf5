//! `uname`: TODO (being written).

use super::{CollectError, Collector, Context};
use crate::metrics::Emitter;

pub struct Uname {}

impl Uname {
    pub fn new() -> Self {
        Uname {}
    }
}

impl Collector for Uname {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
