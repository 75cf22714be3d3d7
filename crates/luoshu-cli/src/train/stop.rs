//! SIGINT and SIGTERM ask a training to stop: the current step finishes, a checkpoint is
//! written, and the run says how to resume. A second signal of the same kind ends the
//! process at once (checkpoints are written atomically, so the last complete one survives).

use luoshu_comm::{Communicator, ReduceOp};
use luoshu_tensor::Tensor;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which stop signals have arrived.
pub struct StopRequest {
    flags: Vec<(i32, Arc<AtomicBool>)>,
}

impl StopRequest {
    /// Install the handlers for SIGINT and SIGTERM.
    pub fn install() -> Result<Self, String> {
        let mut flags = Vec::new();
        for signal in [SIGINT, SIGTERM] {
            let flag = Arc::new(AtomicBool::new(false));
            // Registered first, so it sees the flag as set only from the second signal on.
            signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, flag.clone())
                .and_then(|_| signal_hook::flag::register(signal, flag.clone()))
                .map_err(|e| format!("cannot install the handler of signal {signal}: {e}"))?;
            flags.push((signal, flag));
        }
        Ok(StopRequest { flags })
    }

    /// The first stop signal that arrived in this process, if any.
    fn local(&self) -> Option<i32> {
        self.flags
            .iter()
            .find(|(_, flag)| flag.load(Ordering::Relaxed))
            .map(|&(signal, _)| signal)
    }

    /// Collective over `comm`: the stop signal if any rank received one, so every rank
    /// stops after the same step.
    pub fn agreed(&self, comm: &dyn Communicator) -> Result<Option<i32>, String> {
        let local = self.local().unwrap_or(0);
        if comm.size() == 1 {
            return Ok((local != 0).then_some(local));
        }
        let vote = Tensor::from_slice(&[local as f32], &[1usize][..]).map_err(|e| e.to_string())?;
        let agreed = comm
            .all_reduce(&vote, ReduceOp::Max)
            .map_err(|e| e.to_string())?
            .to_vec::<f32>()
            .map_err(|e| e.to_string())?;
        let signal = agreed.first().copied().unwrap_or(0.0) as i32;
        Ok((signal != 0).then_some(signal))
    }
}

/// `SIGINT` or `SIGTERM`.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
