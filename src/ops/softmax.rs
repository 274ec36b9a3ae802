//! Softmax and log-softmax over the last dimension, numerically stable (max-subtracted),
//! with an optional scale, causal mask and additive mask.
//!
//! For each row of `x` (all dimensions but the last flattened), with logits
//! `l_j = scale · x_j + mask_j` (and `l_j = −∞` where the causal mask hides column `j`):
//!
//! - softmax: `y_j = exp(l_j − max l) / Σ_k exp(l_k − max l)`
//! - log-softmax: `y_j = l_j − max l − log Σ_k exp(l_k − max l)`
//!
//! Arithmetic is f32 whatever the storage dtype, so ±1e4 logits and rows whose exp-sum
//! would overflow f16 are exact to the output's rounding.
//!
//! **Defined results for special inputs** (the same on every backend):
//! - a row whose logits are all −∞ (fully masked) gives **0** everywhere (softmax) or
//!   **−∞** everywhere (log-softmax): no NaN leaks into later layers, and a fully masked
//!   attention row contributes nothing;
//! - −∞ logits elsewhere are ordinary masked entries (probability 0, log-probability −∞);
//! - a NaN or +∞ logit makes its **whole row NaN** (a poisoned row is visible, never
//!   silently renormalised).
//!
//! Rows of any length are handled (1 to beyond 262 144, vocabulary-sized logits).

use super::dispatch;
use crate::error::{Error, Result};
use crate::shape::{broadcast_shapes, broadcast_strides, check_rank};
use crate::tensor::Tensor;

/// Options for [`softmax_with`] and [`log_softmax_with`].
#[derive(Debug, Clone, Copy)]
pub struct SoftmaxOptions<'a> {
    /// Multiplies `x` before the mask is added (e.g. `1/√d` for attention scores).
    /// Must be finite and positive.
    pub scale: f32,
    /// Causal mask, aligned to the bottom right: with `q` rows per block (the size of
    /// the second-to-last dimension, 1 for a vector) and `k` columns, row `i` of a block
    /// sees columns `j ≤ i + (k − q)`. Prefill (`q = k`) gives the usual lower
    /// triangle; decode (`q = 1`) sees every column.
    pub causal: bool,
    /// Additive mask (0 to keep, −∞ or a large negative value to hide), f32 or x's
    /// dtype, broadcast to `x`'s shape; its last dimension must equal `x`'s. See
    /// [`additive_mask`](super::additive_mask) and
    /// [`additive_mask_from_lengths`](super::additive_mask_from_lengths) to build one.
    pub mask: Option<&'a Tensor>,
}

impl Default for SoftmaxOptions<'_> {
    fn default() -> Self {
        SoftmaxOptions {
            scale: 1.0,
            causal: false,
            mask: None,
        }
    }
}

/// Softmax over the last dimension. See the module docs for special values.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    run(x, &SoftmaxOptions::default(), false)
}

/// Log-softmax over the last dimension. See the module docs for special values.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    run(x, &SoftmaxOptions::default(), true)
}

/// Softmax over the last dimension with scale and masks.
pub fn softmax_with(x: &Tensor, options: &SoftmaxOptions<'_>) -> Result<Tensor> {
    run(x, options, false)
}

/// Log-softmax over the last dimension with scale and masks.
pub fn log_softmax_with(x: &Tensor, options: &SoftmaxOptions<'_>) -> Result<Tensor> {
    run(x, options, true)
}

/// The checked call, shared by both backends.
pub(crate) struct Plan {
    pub n: usize,
    pub rows: usize,
    pub q: usize,
    pub causal: bool,
    pub causal_offset: i64,
    pub scale: f32,
    pub log: bool,
    pub mask: Option<Tensor>,
    /// The leading (row) dimensions of x, and the mask's strides over them.
    pub lead_shape: Vec<usize>,
    pub mask_strides: Vec<usize>,
}

impl Plan {
    /// Offset of row `row`'s mask row, in elements.
    pub(crate) fn mask_offset(&self, row: usize) -> usize {
        let mut rem = row;
        let mut off = 0;
        for d in (0..self.lead_shape.len()).rev() {
            off += (rem % self.lead_shape[d]) * self.mask_strides[d];
            rem /= self.lead_shape[d];
        }
        off
    }

    /// Last column row `row` may see under the causal mask (may be negative).
    pub(crate) fn col_limit(&self, row: usize) -> i64 {
        (row % self.q) as i64 + self.causal_offset
    }
}

fn run(x: &Tensor, o: &SoftmaxOptions<'_>, log: bool) -> Result<Tensor> {
    let op = if log { "log_softmax" } else { "softmax" };
    x.expect_float(op)?;
    check_rank(op, x.shape())?;
    if !(o.scale.is_finite() && o.scale > 0.0) {
        return Err(Error::Argument {
            op,
            name: "scale",
            value: o.scale.to_string(),
            expected: "a finite positive number (1.0 for plain softmax)",
        });
    }
    if x.rank() == 0 {
        return Err(Error::shape(
            op,
            "x is a scalar; softmax runs over the last dimension, so reshape x to [1]",
        ));
    }
    let n = x.shape()[x.rank() - 1];
    let lead = &x.shape()[..x.rank() - 1];
    let rows: usize = lead.iter().product();
    let q = if x.rank() >= 2 {
        x.shape()[x.rank() - 2]
    } else {
        1
    };
    let mut mask_strides = vec![0; lead.len()];
    let mask = match o.mask {
        Some(m) => Some(super::params::param(op, "mask", x, m)?),
        None => None,
    };
    if let Some(m) = &mask {
        let ok = m.rank() >= 1
            && m.rank() <= x.rank()
            && m.shape()[m.rank() - 1] == n
            && broadcast_shapes(op, x.shape(), m.shape()).is_ok_and(|s| s == x.shape());
        if !ok {
            return Err(Error::shape(
                op,
                format!(
                    "mask of shape {:?} does not broadcast to x's shape {:?}; its last dimension must be {n} and each other dimension equal to x's or 1",
                    m.shape(),
                    x.shape()
                ),
            ));
        }
        let strides = broadcast_strides(m.shape(), x.shape());
        mask_strides = strides[..lead.len()].to_vec();
    }
    let plan = Plan {
        n,
        rows,
        q: q.max(1),
        causal: o.causal,
        causal_offset: n as i64 - q as i64,
        scale: o.scale,
        log,
        mask,
        lead_shape: lead.to_vec(),
        mask_strides,
    };
    dispatch::run1(
        op,
        &[Some(x), plan.mask.as_ref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        x.shape(),
        x.dtype(),
        |g, out| crate::gpu::softmax::softmax(g, x, &plan, out),
        || Ok(crate::cpu::softmax::softmax(x.cpu_storage(), &plan)),
    )
}
