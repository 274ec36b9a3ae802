//! The dtype rule for parameters, shared by every op that takes them (norm weights and
//! biases, linear bias, softmax masks): see the crate docs.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Checks `p`, a parameter named `name` of op `op` applied to activations `x`: same
/// device, dtype f32 or x's ([`Error::ParamDType`] otherwise). Returns the tensor the
/// backend reads: on the CPU `p` itself (its kernels widen parameters to f32); on the
/// GPU an f32 parameter of a 16-bit `x` rounded to x's dtype (a cast of the parameter's
/// few elements), as the kernels read all bindings in one dtype.
pub(crate) fn param(
    op: &'static str,
    name: &'static str,
    x: &Tensor,
    p: &Tensor,
) -> Result<Tensor> {
    x.device().same(op, p.device())?;
    if p.dtype() == x.dtype() {
        return Ok(p.clone());
    }
    if p.dtype() != crate::DType::F32 {
        return Err(Error::ParamDType {
            op,
            param: name,
            dtype: p.dtype(),
            activation: x.dtype(),
        });
    }
    if x.device().is_cpu() {
        Ok(p.clone())
    } else {
        p.cast(x.dtype())
    }
}
