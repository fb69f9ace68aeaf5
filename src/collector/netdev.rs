//! `netdev`: TODO (being written).

use super::{CollectError, Collector, Context};
use crate::metrics::Emitter;

pub struct Netdev {}

impl Netdev {
    pub fn new(_settings: &super::Settings) -> Self {
        Netdev {}
    }
}

impl Collector for Netdev {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
