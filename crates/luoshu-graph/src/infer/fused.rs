use super::elementwise::broadcast;
use super::rule::{one, InferResult};
use super::InferError;
use crate::TensorType;
use luoshu_backend::ops::ElementwiseProgram;

/// A fused program's output: the broadcast shape of its inputs, the program's result dtype.
pub(super) fn infer(program: &ElementwiseProgram, inputs: &[&TensorType]) -> InferResult {
    if inputs.len() != program.inputs.len() {
        return Err(InferError::Shape(format!(
            "the program takes {} inputs, got {}",
            program.inputs.len(),
            inputs.len()
        )));
    }
    for (k, (t, &d)) in inputs.iter().zip(&program.inputs).enumerate() {
        if t.dtype != d {
            return Err(InferError::Dtype(format!(
                "input {k} is {} but the program loads {d}",
                t.dtype
            )));
        }
    }
    let dtype = program
        .output_dtype()
        .map_err(|e| InferError::Dtype(e.to_string()))?;
    let shape = inputs
        .iter()
        .try_fold(Vec::new(), |acc, t| broadcast(&acc, &t.shape))?;
    one(shape, dtype)
}
