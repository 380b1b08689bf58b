//! Link faults: a change to a proxy's behaviour, undone on heal.

use std::sync::Arc;

use super::{healed, Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::duration::format_duration;
use crate::proxy::{Behavior, Direction, Toxics};
use crate::scenario::Toxic;

pub struct LinkFault {
    pub direction: Direction,
    pub toxic: Toxic,
}

impl LinkFault {
    /// Sets (`on`) or clears the toxic in a behaviour.
    fn apply(&self, b: &mut Behavior, on: bool) {
        let toxic = self.toxic;
        match toxic {
            Toxic::Refuse => b.refuse = on,
            Toxic::Reset => {
                if on {
                    b.resets += 1;
                }
            }
            _ => b.each(self.direction, |t: &mut Toxics| match toxic {
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
        let Some(proxy) = ctx.proxy.clone() else {
            return Err(ctx.error(FaultErrorKind::Other("the fault's proxy is not running".into())));
        };
        ctx.injected(format!("proxy on port {}: {}", proxy.port(), self.describe()));
        proxy.update(|b| self.apply(b, true));
        if self.toxic == Toxic::Reset {
            return Ok(FaultGuard::nothing());
        }
        let fault = LinkFault { direction: self.direction, toxic: self.toxic };
        let (trial, index, target) = (ctx.trial, ctx.index, Arc::clone(&ctx.target));
        let (recorder, journal) = (ctx.recorder.clone(), Arc::clone(&ctx.journal));
        Ok(FaultGuard::new(move || {
            proxy.update(|b| fault.apply(b, false));
            healed(trial, index, target.name(), String::new(), &recorder, &journal);
        }))
    }
}
