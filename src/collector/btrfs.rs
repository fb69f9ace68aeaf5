//! `btrfs`: not written yet (issue #4). Emits nothing.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::Emitter;

pub const OPTIONS: &[Opt] = &[];

pub struct Btrfs {}

impl Btrfs {
    pub fn new(_settings: &Settings) -> Self {
        Btrfs {}
    }
}

impl Collector for Btrfs {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
