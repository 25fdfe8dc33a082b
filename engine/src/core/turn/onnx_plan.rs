//! Building a tract plan for a model shipped inside the binary (Silero VAD, Smart Turn).

use std::sync::Arc;

use tract_onnx::prelude::*;

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

/// Loads `model`, lets `fix` pin what it needs (symbolic dimensions), optimizes it.
pub fn build(
    model: &[u8],
    fix: impl FnOnce(TypedModel) -> TractResult<TypedModel>,
) -> Result<Plan, ModelError> {
    tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(model))
        .and_then(|m| m.into_typed())
        .and_then(fix)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map(Arc::new)
        .map_err(ModelError::from)
}
