//! Link faults: a change to a proxy's behaviour, undone on heal.

use std::sync::Arc;

use super::{Fault, FaultContext, FaultError, FaultGuard};
use crate::duration::format_duration;
use crate::proxy::{Behavior, Direction, Proxy, Toxics};
use crate::scenario::Toxic;

pub struct LinkFault {
    pub direction: Direction,
    pub toxic: Toxic,
    pub proxy: Arc<Proxy>,
}

impl LinkFault {
    /// Sets (`on`) or clears a toxic in a behaviour.
    fn apply_to(direction: Direction, toxic: Toxic, b: &mut Behavior, on: bool) {
        match toxic {
            Toxic::Refuse => b.refuse = on,
            Toxic::Reset => {
                if on {
                    b.resets += 1;
                }
            }
            _ => b.each(direction, |t: &mut Toxics| match toxic {
                Toxic::Blackhole => t.blackhole = on,
                Toxic::Latency { delay, jitter } => t.latency = on.then_some((delay, jitter)),
                Toxic::Bandwidth { bytes_per_second } => t.bandwidth = on.then_some(bytes_per_second),
                Toxic::SlowClose { delay } => t.slow_close = on.then_some(delay),
                Toxic::Timeout { delay } => t.timeout = on.then_some(delay),
                Toxic::Slice { size, delay } => t.slice = on.then_some((size as usize, delay)),
                Toxic::LimitData { bytes } => t.limit_data = on.then_some(bytes),
                Toxic::Refuse | Toxic::Reset => {}
            }),
        }
    }

    fn describe(&self) -> String {
        let d = format_duration;
        let what = match self.toxic {
            Toxic::Blackhole => "nothing forwarded".to_string(),
            Toxic::Refuse => return "new connections refused".to_string(),
            Toxic::Reset => return "open connections reset".to_string(),
            Toxic::Latency { delay, jitter } => format!("{} ± {} per chunk", d(delay), d(jitter)),
            Toxic::Bandwidth { bytes_per_second } => format!("{bytes_per_second} bytes/s"),
            Toxic::SlowClose { delay } => format!("closes passed on {} late", d(delay)),
            Toxic::Timeout { delay } => format!("nothing forwarded, closed after {}", d(delay)),
            Toxic::Slice { size, delay } => format!("slices of {size} bytes, {} apart", d(delay)),
            Toxic::LimitData { bytes } => format!("closed after {bytes} more bytes"),
        };
        let direction = match self.direction {
            Direction::Up => "client to target",
            Direction::Down => "target to client",
            Direction::Both => "both ways",
        };
        format!("{what}, {direction}")
    }
}

impl Fault for LinkFault {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let proxy = Arc::clone(&self.proxy);
        // In effect once the proxy has it: an op sent after the recorded
        // injection meets the fault (under load, recording first left a
        // window in which an op sent "inside" a blackhole succeeded).
        proxy.update(|b| LinkFault::apply_to(self.direction, self.toxic, b, true));
        ctx.injected(format!("proxy on port {}: {}", proxy.port(), self.describe()));
        if self.toxic == Toxic::Reset {
            return Ok(FaultGuard::nothing());
        }
        let (direction, toxic) = (self.direction, self.toxic);
        Ok(ctx.heal_with(move || {
            proxy.update(|b| LinkFault::apply_to(direction, toxic, b, false));
            String::new()
        }))
    }
}
