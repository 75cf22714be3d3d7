//! CPU kernels: random (being built).

use crate::ops::RandomDist;
use crate::Result;
use luoshu_tensor::Tensor;

pub(crate) fn random(_dist: RandomDist, _seed: u64, _stream: u64, _out: &Tensor) -> Result<()> {
    Err(super::unbuilt("random"))
}
