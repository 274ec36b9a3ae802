//! Normalisation over the last dimension: layer norm, RMS norm, and RMS norm fused with
//! the residual add before it.
//!
//! Statistics and arithmetic are f32 whatever the storage dtype. Layer norm computes the
//! variance from the mean-centred row (two passes over it), so rows with a large mean
//! keep their precision. NaN and ±∞ inputs follow IEEE arithmetic: a row holding one
//! comes out NaN (its statistics are NaN or ∞). With `eps = 0`, an all-zero row divides
//! 0 by 0 and gives NaN; use the model's eps (1e-5, 1e-6).

use super::dispatch;
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
        dispatch::same_device_and_dtype(op, x, [t])?;
        if t.shape() != [n] {
            return Err(Error::LastDimMismatch {
                op,
                name,
                shape: t.shape().to_vec(),
                expected: n,
            });
        }
    }
    if let Some(r) = res {
        dispatch::same_device_and_dtype(op, x, [r])?;
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
    let cpu = || {
        crate::cpu::norm::norm(
            x.cpu_storage(),
            res.map(|r| r.cpu_storage()),
            w.cpu_storage(),
            b.map(|b| b.cpu_storage()),
            eps,
            n,
        )
    };
    let out = (x.shape(), x.dtype());
    match res {
        None => {
            let [y] = dispatch::run(
                op,
                x.device(),
                [out],
                |g, [y]| crate::gpu::norm::norm(g, x, None, w, b, eps, y, None),
                || Ok([cpu().0]),
            )?;
            Ok((y, None))
        }
        Some(r) => {
            let [y, h] = dispatch::run(
                op,
                x.device(),
                [out, out],
                |g, [y, h]| crate::gpu::norm::norm(g, x, Some(r), w, b, eps, y, Some(h)),
                || match cpu() {
                    (y, Some(h)) => Ok([y, h]),
                    (_, None) => Err(crate::Error::Internal {
                        message: format!("{op}: the residual form returned no sum"),
                    }),
                },
            )?;
            Ok((y, Some(h)))
        }
    }
}
