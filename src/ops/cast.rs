//! Casts between f32, f16 and bf16.

use crate::device::Backend;
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::Tensor;

/// Converts `x` to `dtype` (round to nearest even, overflow to ±inf, NaN kept).
/// Returns `x` itself (shared storage) when the dtype already matches.
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    if x.dtype() == dtype {
        return Ok(x.clone());
    }
    match &x.device().inner.backend {
        Backend::Gpu(g) => {
            let out = Tensor::uninit(x.device(), x.shape(), dtype, "cast")?;
            if !x.is_empty() {
                crate::gpu::cast::cast(g, x, &out)?;
            }
            Ok(out)
        }
        Backend::Cpu => Ok(Tensor::from_cpu(
            x.device(),
            crate::cpu::cast::cast(x.cpu_storage(), dtype),
            x.shape(),
        )),
    }
}
