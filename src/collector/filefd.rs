//! `filefd`: not written yet (issue #4). Emits nothing.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::Emitter;

pub const OPTIONS: &[Opt] = &[];

pub struct Filefd {}

impl Filefd {
    pub fn new(_settings: &Settings) -> Self {
        Filefd {}
    }
}

impl Collector for Filefd {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
