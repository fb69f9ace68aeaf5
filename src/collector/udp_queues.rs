//! `udp_queues`: not written yet (issue #4). Emits nothing.

use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::Emitter;

pub const OPTIONS: &[Opt] = &[];

pub struct UdpQueues {}

impl UdpQueues {
    pub fn new(_settings: &Settings) -> Self {
        UdpQueues {}
    }
}

impl Collector for UdpQueues {
    fn update(&mut self, _ctx: &Context, _out: &mut Emitter) -> Result<(), CollectError> {
        Ok(())
    }
}
