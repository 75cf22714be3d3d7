//! Where each luoshu parameter lives in a Hugging Face LLaMA checkpoint, and how its layout
//! differs.
//!
//! Names come from a parameter's role and layer. Linear weights are `[in, out]` in luoshu
//! (`x · w`) and `[out, in]` in HF (`nn.Linear`: `x · wᵀ`), so they are transposed; the
//! embedding and the norm gains are stored alike. RoPE needs nothing more: luoshu's kernel
//! pairs dimension `i` of a head with `i + head_dim/2` (rotate-half), exactly as HF's
//! `rotate_half`, and both order q/k output features head by head, so q/k columns map one
//! to one (`tests/hf.rs` checks this against a reference forward pass written from HF's
//! formulas).

use crate::{Error, Result};
use luoshu_model::{ParamRole, ParamSpec};
use luoshu_tensor::Tensor;

/// The HF tensor name of `spec`.
pub(super) fn hf_name(spec: &ParamSpec) -> Result<String> {
    use ParamRole::*;
    let in_layer = |suffix: &str| match spec.layer {
        Some(layer) => Ok(format!("model.layers.{layer}.{suffix}")),
        None => Err(Error::State(format!(
            "parameter `{}` ({:?}) belongs to a layer but has none",
            spec.name, spec.role
        ))),
    };
    match spec.role {
        Embedding => Ok("model.embed_tokens.weight".into()),
        FinalNorm => Ok("model.norm.weight".into()),
        LmHead => Ok("lm_head.weight".into()),
        AttentionNorm => in_layer("input_layernorm.weight"),
        Query => in_layer("self_attn.q_proj.weight"),
        Key => in_layer("self_attn.k_proj.weight"),
        Value => in_layer("self_attn.v_proj.weight"),
        AttentionOut => in_layer("self_attn.o_proj.weight"),
        MlpNorm => in_layer("post_attention_layernorm.weight"),
        MlpGate => in_layer("mlp.gate_proj.weight"),
        MlpUp => in_layer("mlp.up_proj.weight"),
        MlpDown => in_layer("mlp.down_proj.weight"),
    }
}

/// Whether the parameter is a linear weight (`[in, out]` here, `[out, in]` in HF).
fn is_linear(role: ParamRole) -> bool {
    !(role == ParamRole::Embedding || role.is_norm())
}

/// The shape of `spec`'s HF tensor.
pub(super) fn hf_shape(spec: &ParamSpec) -> Vec<usize> {
    let mut shape = spec.shape.clone();
    if is_linear(spec.role) {
        shape.reverse();
    }
    shape
}

/// The values of parameter `t` (of `spec`) in HF's layout, row-major.
pub(super) fn to_hf(spec: &ParamSpec, t: &Tensor) -> Result<Vec<f32>> {
    let t = if is_linear(spec.role) {
        t.transpose(0, 1)?
    } else {
        t.clone()
    };
    Ok(t.to_vec::<f32>()?)
}

/// The luoshu parameter of `spec` from its HF values (row-major, [`hf_shape`]).
pub(super) fn from_hf(spec: &ParamSpec, values: Vec<f32>) -> Result<Tensor> {
    let hf = Tensor::from_vec(values, hf_shape(spec).as_slice())?;
    if !is_linear(spec.role) {
        return Ok(hf);
    }
    let values = hf.transpose(0, 1)?.to_vec::<f32>()?;
    Ok(Tensor::from_vec(values, spec.shape.as_slice())?)
}
