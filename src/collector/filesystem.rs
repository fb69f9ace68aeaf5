//! `filesystem`: TODO (being written).

use super::{CollectError, Collector, Context};
use crate::metrics::Emitter;

pub struct Filesystem {}

impl Filesystem {
    pub fn new(_settings: &super::Settings) -> Self {
        Filesystem {}
    }
}

impl Collector for Filesystem {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
