//! The equivalence check of hot switching, the same one every static strategy passes
//! ([`crate::parallel::conformance`]): after every step, on every rank, the loss, the
//! gradient norm before clipping and every element of the parameters and AdamW moments
//! the rank holds in the update strategy's layout equal one device's.

use super::{BucketStrategies, HotSwitchTrainer};
use crate::parallel::compare::Agreement;
use crate::parallel::conformance::{Checked, Reference, SEED};
use crate::parallel::GradientFault;
use crate::Result;
use luoshu_backend::Backend;
use luoshu_comm::Communicator;
use luoshu_dist::Strategy;
use std::sync::Arc;

/// Collective over `world`: hot switching over `buckets` with `update` as the update
/// strategy on `reference`'s case and batches, checked on this rank. `fault` breaks one
/// strategy's gradients on purpose (the harness's own tests).
pub fn check_hot_rank(
    backend: Arc<dyn Backend>,
    world: Arc<dyn Communicator>,
    buckets: &BucketStrategies,
    update: Strategy,
    reference: &Reference,
    fault: Option<(Strategy, GradientFault)>,
) -> Result<Agreement> {
    let case = &reference.case;
    let mut trainer = HotSwitchTrainer::new(
        case.model.clone(),
        case.config.clone(),
        backend.clone(),
        world.clone(),
        buckets.clone(),
        update,
        SEED,
    )?;
    if let Some((strategy, fault)) = fault {
        trainer.inject_gradient_fault(strategy, Some(fault))?;
    }
    let checked = Checked {
        who: format!(
            "{} hot {buckets} → {update} rank {}",
            case.name,
            world.rank()
        ),
        model: case.model.clone(),
        steps_taken: trainer.step(),
        state_strategy: update,
        world,
        backend,
    };
    checked.run(reference, |batch| {
        let stats = trainer.train_step(batch)?;
        Ok((stats.step, trainer.update_trainer().state_pieces()?))
    })
}
