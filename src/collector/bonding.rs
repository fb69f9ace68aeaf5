//! `bonding`: not written yet (issue #4). Emits nothing.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::Emitter;

pub const OPTIONS: &[Opt] = &[];

pub struct Bonding {}

impl Bonding {
    pub fn new(_settings: &Settings) -> Self {
        Bonding {}
    }
}

impl Collector for Bonding {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
