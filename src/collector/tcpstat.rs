//! `tcpstat`: not written yet (issue #4). Emits nothing.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::Emitter;

pub const OPTIONS: &[Opt] = &[];

pub struct Tcpstat {}

impl Tcpstat {
    pub fn new(_settings: &Settings) -> Self {
        Tcpstat {}
    }
}

impl Collector for Tcpstat {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
