//! `luoshu plan` and `luoshu simulate`: the cost model of `luoshu-sim` on a model, a
//! hardware description and a length distribution.

pub mod lengths;
pub mod plan;
pub mod report;
pub mod simulate;
pub mod workload;
