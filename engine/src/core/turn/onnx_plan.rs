//! Building a tract plan for a model shipped inside the binary (Silero VAD, Smart Turn).

use std::sync::Arc;

use tract_onnx::prelude::*;

/// An optimized, runnable model, shared by every stream that uses it.
pub type Plan = Arc<TypedSimplePlan<TypedModel>>;

/// Loads `model`, lets `fix` pin what it needs (symbolic dimensions), optimizes it. The error is
/// tract's message.
pub fn build(
    model: &[u8],
    fix: impl FnOnce(TypedModel) -> TractResult<TypedModel>,
) -> Result<Plan, String> {
    tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(model))
        .and_then(|m| m.into_typed())
        .and_then(fix)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map(Arc::new)
        .map_err(|e| format!("{e:#}"))
}
