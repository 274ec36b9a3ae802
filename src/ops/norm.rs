//! Normalisation over the last dimension: layer norm, RMS norm, and RMS norm fused with
//! the residual add before it.
//!
//! Statistics and arithmetic are f32 whatever the storage dtype. Layer norm computes the
//! variance from the mean-centred row (two passes over it), so rows with a large mean
//! keep their precision. NaN and ±∞ inputs follow IEEE arithmetic: a row holding one
//! comes out NaN (its statistics are NaN or ∞). With `eps = 0`, an all-zero row divides
//! 0 by 0 and gives NaN; use the model's eps (1e-5, 1e-6).

use crate::device::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `y = x / sqrt(mean(x²) + eps) · weight` over the last dimension.
/// `weight` has shape `[n]` for rows of `n`; `eps` must be finite and ≥ 0.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    let (y, _) = run("rms_norm", x, None, weight, None, eps)?;
    Ok(y)
}

/// `y = (x − mean) / sqrt(var + eps) · weight + bias` over the last dimension
/// (biased variance, as PyTorch). `weight` and `bias` have shape `[n]`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    let (y, _) = run("layer_norm", x, None, weight, Some(bias), eps)?;
    Ok(y)
}

/// The residual add and RMS norm of a pre-norm transformer block in one pass over
/// memory: returns `(h, rms_norm(h, weight, eps))` with `h = x + residual` (the new
/// residual stream, in x's dtype). The norm is taken of the f32 sum, before `h` is
/// rounded to the storage dtype.
pub fn add_rms_norm(
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let (y, h) = run("add_rms_norm", x, Some(residual), weight, None, eps)?;
    Ok((h.expect("the residual form returns the sum"), y))
}

/// `h = x + residual` and `layer_norm(h, weight, bias, eps)` in one pass; returns
/// `(h, normed)`.
pub fn add_layer_norm(
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let (y, h) = run("add_layer_norm", x, Some(residual), weight, Some(bias), eps)?;
    Ok((h.expect("the residual form returns the sum"), y))
}

fn same(op: &'static str, x: &Tensor, other: &Tensor) -> Result<()> {
    x.device().same(op, other.device())?;
    if other.dtype() != x.dtype() {
        return Err(Error::DTypeMismatch {
            op,
            lhs: x.dtype(),
            rhs: other.dtype(),
        });
    }
    Ok(())
}

fn run(
    op: &'static str,
    x: &Tensor,
    res: Option<&Tensor>,
    w: &Tensor,
    b: Option<&Tensor>,
    eps: f32,
) -> Result<(Tensor, Option<Tensor>)> {
    x.expect_float(op)?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::Argument {
            op,
            name: "eps",
            value: eps.to_string(),
            expected: "a finite number >= 0 (typically 1e-5 or 1e-6)",
        });
    }
    if x.rank() == 0 || x.shape()[x.rank() - 1] == 0 {
        return Err(Error::shape(
            op,
            format!(
                "x has shape {:?}; it needs a last dimension of at least 1 to normalise over",
                x.shape()
            ),
        ));
    }
    let n = x.shape()[x.rank() - 1];
    for (name, t) in [("weight", Some(w)), ("bias", b)] {
        let Some(t) = t else { continue };
        same(op, x, t)?;
        if t.shape() != [n] {
            return Err(Error::shape(
                op,
                format!(
                    "{name} has shape {:?} but x's rows have {n} elements; pass a {name} of shape [{n}]",
                    t.shape()
                ),
            ));
        }
    }
    if let Some(r) = res {
        same(op, x, r)?;
        if r.shape() != x.shape() {
            return Err(Error::shape(
                op,
                format!(
                    "residual has shape {:?} but x has {:?}; they must match",
                    r.shape(),
                    x.shape()
                ),
            ));
        }
    }
    match &x.device().inner.backend {
        Backend::Gpu(g) => {
            let y = Tensor::uninit(x.device(), x.shape(), x.dtype(), op)?;
            let h = match res {
                Some(_) => Some(Tensor::uninit(x.device(), x.shape(), x.dtype(), op)?),
                None => None,
            };
            crate::gpu::norm::norm(g, x, res, w, b, eps, &y, h.as_ref())?;
            Ok((y, h))
        }
        Backend::Cpu => {
            let (y, h) = crate::cpu::norm::norm(
                x.cpu_storage(),
                res.map(|r| r.cpu_storage()),
                w.cpu_storage(),
                b.map(|b| b.cpu_storage()),
                eps,
                n,
            );
            Ok((
                Tensor::from_cpu(x.device(), y, x.shape()),
                h.map(|h| Tensor::from_cpu(x.device(), h, x.shape())),
            ))
        }
    }
}
