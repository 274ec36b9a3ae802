//! Normalisation over the last dimension: layer norm, RMS norm, and RMS norm fused with
//! the residual add before it.
//!
//! Statistics and arithmetic are f32 whatever the storage dtype. Layer norm computes the
//! variance from the mean-centred row (two passes over it), so rows with a large mean
//! keep their precision. A row holding NaN or ±∞ comes out NaN in every element, on
//! every backend (its statistic is NaN or ∞; the norm never multiplies the row's finite
//! elements by a zero scale); so does a finite row whose sum of squares overflows f32
//! (elements beyond about 1.8e19), rather than silently giving zeros. With `eps = 0`, an
//! all-zero row divides 0 by 0 and gives NaN; use the model's eps (1e-5, 1e-6).

use super::dispatch;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The two results of a fused residual add and norm: the new residual stream and its
/// normalisation. Named so the two tensors cannot be swapped silently.
#[derive(Debug, Clone)]
pub struct AddNorm {
    /// `x + residual`, in x's dtype: the residual stream a pre-norm block carries on.
    pub sum: Tensor,
    /// The norm of the f32 sum (taken before `sum` is rounded to the storage dtype).
    pub normed: Tensor,
}

/// `y = x / sqrt(mean(x²) + eps) · weight` over the last dimension.
/// `weight` has shape `[n]` for rows of `n` (f32 or x's dtype); `eps` must be finite and
/// ≥ 0.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    let (y, _) = run("rms_norm", x, None, weight, None, eps, false)?;
    Ok(y)
}

/// `y = (x − mean) / sqrt(var + eps) · weight + bias` over the last dimension
/// (biased variance, as PyTorch). `weight` and `bias` have shape `[n]` (f32 or x's
/// dtype).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    let (y, _) = run("layer_norm", x, None, weight, Some(bias), eps, false)?;
    Ok(y)
}

/// The residual add and RMS norm of a pre-norm transformer block in one pass over
/// memory: `sum = x + residual` (the new residual stream, in x's dtype) and
/// `normed = rms_norm(sum, weight, eps)`, taken of the f32 sum before it is rounded.
pub fn add_rms_norm(x: &Tensor, residual: &Tensor, weight: &Tensor, eps: f32) -> Result<AddNorm> {
    let (normed, sum) = run("add_rms_norm", x, Some(residual), weight, None, eps, true)?;
    Ok(AddNorm {
        sum: sum.expect("the residual form returns the sum"),
        normed,
    })
}

/// `sum = x + residual` and `normed = layer_norm(sum, weight, bias, eps)` in one pass.
pub fn add_layer_norm(
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
) -> Result<AddNorm> {
    let (normed, sum) = run(
        "add_layer_norm",
        x,
        Some(residual),
        weight,
        Some(bias),
        eps,
        true,
    )?;
    Ok(AddNorm {
        sum: sum.expect("the residual form returns the sum"),
        normed,
    })
}

/// Post-norm form (BERT): `layer_norm(x + residual, weight, bias, eps)` in one pass,
/// without writing the sum (post-LN blocks carry the normed tensor on, never the sum).
pub fn add_layer_norm_post(
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let (y, _) = run(
        "add_layer_norm_post",
        x,
        Some(residual),
        weight,
        Some(bias),
        eps,
        false,
    )?;
    Ok(y)
}

/// Post-norm form: `rms_norm(x + residual, weight, eps)` in one pass, without writing the
/// sum.
pub fn add_rms_norm_post(
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let (y, _) = run(
        "add_rms_norm_post",
        x,
        Some(residual),
        weight,
        None,
        eps,
        false,
    )?;
    Ok(y)
}

/// `y = x / max(‖x‖₂, eps)` over the last dimension (PyTorch's `F.normalize(x, dim=-1)`;
/// `eps` is typically 1e-12 and must be finite and ≥ 0). The norm is computed in f32.
/// One fused pass on every backend. A row holding NaN or ±∞ (or whose squares overflow
/// f32) comes out NaN in every element.
pub fn l2_normalize(x: &Tensor, eps: f32) -> Result<Tensor> {
    let op = "l2_normalize";
    x.expect_float(op)?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::Argument {
            op,
            name: "eps",
            value: eps.to_string(),
            expected: "a finite number >= 0 (PyTorch's default is 1e-12)",
        });
    }
    if x.rank() == 0 {
        return Err(Error::shape(
            op,
            "x is a scalar; it needs a last dimension to normalise over: reshape x to [1]",
        ));
    }
    let n = x.shape()[x.rank() - 1];
    if x.is_empty() {
        return Ok(x.clone());
    }
    dispatch::run1(
        op,
        &[x],
        x.shape(),
        x.dtype(),
        |g, y| crate::gpu::norm::l2_normalize(g, x, eps, y),
        || Ok(crate::cpu::norm::l2_normalize(x.cpu_storage(), eps, n)),
    )
}

fn run(
    op: &'static str,
    x: &Tensor,
    res: Option<&Tensor>,
    w: &Tensor,
    b: Option<&Tensor>,
    eps: f32,
    write_sum: bool,
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
    let w = super::params::param(op, "weight", x, w)?;
    let b = match b {
        Some(b) => Some(super::params::param(op, "bias", x, b)?),
        None => None,
    };
    for (name, t) in [("weight", Some(&w)), ("bias", b.as_ref())] {
        let Some(t) = t else { continue };
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
            b.as_ref().map(|b| b.cpu_storage()),
            eps,
            n,
            write_sum,
        )
    };
    let out = (x.shape(), x.dtype());
    let inputs: Vec<&Tensor> = [Some(x), res, Some(&w), b.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    match res.filter(|_| write_sum) {
        None => {
            let [y] = dispatch::run(
                op,
                &inputs,
                [out],
                |g, [y]| crate::gpu::norm::norm(g, x, res, &w, b.as_ref(), eps, y, None, false),
                || Ok([cpu().0]),
            )?;
            Ok((y, None))
        }
        Some(r) => {
            let [y, h] = dispatch::run(
                op,
                &inputs,
                [out, out],
                |g, [y, h]| {
                    crate::gpu::norm::norm(g, x, Some(r), &w, b.as_ref(), eps, y, Some(h), false)
                },
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
