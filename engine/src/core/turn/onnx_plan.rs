//! Building a tract plan for a model shipped inside the binary (Silero VAD, Smart Turn).

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxExp, SoftmaxKind};

/// An optimized, runnable model, shared by every stream that uses it.
pub type Plan = Arc<TypedSimplePlan<TypedModel>>;

/// Tract's error, shareable (a plan's build failure is cached and handed to every caller).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:#}")]
pub struct ModelError(Arc<TractError>);

impl From<TractError> for ModelError {
    fn from(e: TractError) -> Self {
        ModelError(Arc::new(e))
    }
}

impl From<tract_ndarray::ShapeError> for ModelError {
    fn from(e: tract_ndarray::ShapeError) -> Self {
        ModelError(Arc::new(e.into()))
    }
}

/// The exponential in the model's softmaxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exp {
    /// tract's vectorized approximation (`fast_softmax`).
    Fast,
    /// libc's `expf`, element by element: what onnxruntime computes. The reference tests hold
    /// the models to onnxruntime with it.
    #[cfg_attr(not(test), allow(dead_code))]
    Exact,
}

/// Loads `model`, lets `fix` pin what it needs (symbolic dimensions), optimizes it.
pub fn build(
    model: &[u8],
    exp: Exp,
    fix: impl FnOnce(TypedModel) -> TractResult<TypedModel>,
) -> Result<Plan, ModelError> {
    tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(model))
        .and_then(|m| m.into_typed())
        .and_then(fix)
        .map(|m| match exp {
            Exp::Fast => fast_softmax(m),
            Exp::Exact => m,
        })
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map(Arc::new)
        .map_err(ModelError::from)
}

/// Softmax with tract's vectorized exponential instead of libc's `expf` per element, which
/// tract calls one element at a time: Smart Turn's four attention softmaxes (6 x 400 x 400 each)
/// took about 0.7 of its 0.9 s per decision that way (flushing subnormals to zero did not change
/// it), 0.17 s in all with this. The approximation moves Smart Turn's probabilities by up to 0.012
/// on the reference clips (its test keeps the exact path against onnxruntime).
fn fast_softmax(mut m: TypedModel) -> TypedModel {
    for node in m.nodes_mut() {
        if let Some(op) = node.op.downcast_ref::<Softmax>() {
            if matches!(op.kind, SoftmaxKind::Softmax(SoftmaxExp::Libc)) {
                let mut op = op.clone();
                op.kind = SoftmaxKind::Softmax(SoftmaxExp::FastCompact);
                node.op = Box::new(op);
            }
        }
    }
    m
}
