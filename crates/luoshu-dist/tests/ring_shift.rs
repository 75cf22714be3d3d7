//! The executor's ring shift over a threads communicator: rank `i` receives the tensor of
//! rank `i − offset`, and the gradient graph sends the gradient back the other way.

use luoshu_backend::cpu::CpuBackend;
use luoshu_backend::Backend;
use luoshu_comm::threads;
use luoshu_dist::CommCollectives;
use luoshu_graph::{evaluate_with, fixed_shape, grad, Bindings, Collectives, Graph};
use luoshu_tensor::{DType, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// Per rank of a `parts`-rank group: `(shifted x, d Σ(shifted · w) / dx)` with `x` filled
/// with the rank and `w` with ten times the rank.
fn shift_and_gradient(parts: usize, offset: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    threads::run(parts, |comm| {
        let backend: Arc<dyn Backend> = Arc::new(CpuBackend::new());
        let mut g = Graph::new();
        let shape = fixed_shape(&[2, 3]);
        let x = g.param("x", &shape, DType::F32).unwrap();
        let w = g.input("w", &shape, DType::F32).unwrap();
        let shifted = g.ring_shift(x, "cp", parts, offset).unwrap();
        let weighted = g.mul(shifted, w).unwrap();
        let loss = g.sum_all(weighted).unwrap();
        let (mut backward, grads) = grad(&g, loss, &[x]).unwrap();
        backward.set_outputs(vec![shifted, grads[0]]).unwrap();
        let rank = comm.rank() as f32;
        let feeds = HashMap::from([
            (
                "x".to_string(),
                Tensor::from_vec(vec![rank; 6], [2, 3].as_slice()).unwrap(),
            ),
            (
                "w".to_string(),
                Tensor::from_vec(vec![10.0 * rank; 6], [2, 3].as_slice()).unwrap(),
            ),
        ]);
        let collectives = CommCollectives::new(
            HashMap::from([("cp".to_string(), comm.clone())]),
            backend.clone(),
        );
        let out = evaluate_with(
            &backward,
            &Bindings::new(),
            &feeds,
            backend.as_ref(),
            Some(&collectives as &dyn Collectives),
        )
        .unwrap();
        (
            out[0].to_vec::<f32>().unwrap(),
            out[1].to_vec::<f32>().unwrap(),
        )
    })
}

#[test]
fn a_ring_shift_delivers_the_previous_ranks_tensor_and_returns_its_gradient() {
    for parts in 1..=3 {
        for offset in 0..parts {
            for (rank, (shifted, dx)) in shift_and_gradient(parts, offset).iter().enumerate() {
                let from = (rank + parts - offset) % parts;
                let to = (rank + offset) % parts;
                let what = format!("parts {parts} offset {offset} rank {rank}");
                assert_eq!(shifted, &vec![from as f32; 6], "{what}");
                assert_eq!(dx, &vec![10.0 * to as f32; 6], "{what}");
            }
        }
    }
}
