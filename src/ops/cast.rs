//! Casts between f32, f16 and bf16, and from u32 ids to floats.

use super::dispatch;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Converts `x` to `dtype` (round to nearest even, overflow to ±inf, NaN kept).
/// Returns `x` itself (shared storage) when the dtype already matches.
///
/// u32 → float converts each id exactly below 2^24 (rounding to nearest above), on the
/// CPU device; float → u32 is refused ([`Error::UnsupportedDType`]): truncation and
/// range are the caller's choice (argmax already yields u32). On a GPU device, casts
/// involving u32 are refused too; copy the ids with `to_device(&Device::cpu())` first.
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    if x.dtype() == dtype {
        return Ok(x.clone());
    }
    if dtype == DType::U32 || (x.dtype() == DType::U32 && !x.device().is_cpu()) {
        return Err(Error::UnsupportedDType {
            op: "cast",
            dtype: if dtype == DType::U32 { dtype } else { x.dtype() },
            supported: "casts between f32, f16 and bf16 on every device, and u32 -> float on the CPU device",
        });
    }
    dispatch::run1(
        "cast",
        &[x],
        x.shape(),
        dtype,
        |g, out| crate::gpu::cast::cast(g, x, out),
        || Ok(crate::cpu::cast::cast(x.cpu_storage(), dtype)),
    )
}
