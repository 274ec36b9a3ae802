//! Unary math, elementwise: exp, log, sqrt, rsqrt, neg, abs, tanh, sigmoid, clamp; and
//! the additive masks attention needs (from a 0/1 mask or from sequence lengths).
//! Arithmetic is f32; the output has the input's dtype.
//!
//! Special values are IEEE's, the same on every backend: NaN gives NaN (clamp included,
//! as PyTorch), `log(0) = −∞`, `log(x<0) = sqrt(x<0) = NaN`, `rsqrt(±0) = ±∞`,
//! `exp` overflows to +∞ and gives 0 for −∞, `sigmoid(±∞) = 1, 0`, `tanh(±∞) = ±1`.

use super::dispatch;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Which unary op. [`UnaryOp::Clamp`] carries its bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// eˣ
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// 1/√x
    Rsqrt,
    /// −x
    Neg,
    /// |x|
    Abs,
    /// tanh x
    Tanh,
    /// 1 / (1 + e⁻ˣ)
    Sigmoid,
    /// `min(max(x, min), max)`; bounds may be ±∞, must not be NaN, and `min ≤ max`.
    Clamp {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// 0 where x ≠ 0 (keep), −∞ where x = 0 (hide): a 0/1 keep-mask as an additive
    /// attention mask. NaN counts as nonzero. See [`additive_mask`].
    AdditiveMask,
}

impl UnaryOp {
    /// The op's name in errors and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Clamp { .. } => "clamp",
            UnaryOp::AdditiveMask => "additive_mask",
        }
    }

    /// The op code of `shaders/unary.wgsl`.
    pub(crate) fn code(self) -> u32 {
        match self {
            UnaryOp::Exp => 0,
            UnaryOp::Log => 1,
            UnaryOp::Sqrt => 2,
            UnaryOp::Rsqrt => 3,
            UnaryOp::Neg => 4,
            UnaryOp::Abs => 5,
            UnaryOp::Tanh => 6,
            UnaryOp::Sigmoid => 7,
            UnaryOp::Clamp { .. } => 8,
            UnaryOp::AdditiveMask => 9,
        }
    }
}

/// Applies `op` to every element of `x` (any float dtype; the output keeps it).
pub fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let name = op.name();
    x.expect_float(name)?;
    let (lo, hi) = match op {
        UnaryOp::Clamp { min, max } => {
            if min.is_nan() || max.is_nan() || min > max {
                return Err(Error::Argument {
                    op: name,
                    name: "min, max",
                    value: format!("({min}, {max})"),
                    expected: "two bounds that are not NaN with min <= max (use ±f32::INFINITY for a one-sided clamp)",
                });
            }
            (min, max)
        }
        _ => (0.0, 0.0),
    };
    dispatch::run1(
        name,
        &[x],
        x.shape(),
        x.dtype(),
        |g, y| crate::gpu::unary::unary(g, op.code(), lo, hi, x, y),
        || Ok(crate::cpu::unary::unary(op, x.cpu_storage())),
    )
}

/// eˣ.
pub fn exp(x: &Tensor) -> Result<Tensor> {
    unary(x, UnaryOp::Exp)
}

/// Natural logarithm.
pub fn log(x: &Tensor) -> Result<Tensor> {
    unary(x, UnaryOp::Log)
}

/// Square root.
pub fn sqrt(x: &Tensor) -> Result<Tensor> {
    unary(x, UnaryOp::Sqrt)
}

/// Reciprocal square root, `1/√x`.
pub fn rsqrt(x: &Tensor) -> Result<Tensor> {
    unary(x, UnaryOp::Rsqrt)
}

/// Negation.
pub fn neg(x: &Tensor) -> Result<Tensor> {
    unary(x, UnaryOp::Neg)
}

/// Absolute value.
pub fn abs(x: &Tensor) -> Result<Tensor> {
    unary(x, UnaryOp::Abs)
}

/// Hyperbolic tangent.
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    unary(x, UnaryOp::Tanh)
}

/// Logistic sigmoid, `1 / (1 + e⁻ˣ)`.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    unary(x, UnaryOp::Sigmoid)
}

/// `min(max(x, min), max)`; NaN stays NaN. Bounds may be infinite (a one-sided clamp)
/// and must satisfy `min ≤ max`.
pub fn clamp(x: &Tensor, min: f32, max: f32) -> Result<Tensor> {
    unary(x, UnaryOp::Clamp { min, max })
}

/// A keep-mask (nonzero = attend, 0 = hide; e.g. a `[batch, seq]` attention mask as
/// tokenizers return it) as an additive mask for [`softmax_with`](super::softmax_with):
/// 0 where the mask is nonzero, −∞ where it is 0. Same shape and dtype as `mask`;
/// reshape it to `[batch, 1, 1, seq]` to broadcast over heads and query rows.
pub fn additive_mask(mask: &Tensor) -> Result<Tensor> {
    unary(mask, UnaryOp::AdditiveMask)
}

/// The additive padding mask of a batch of sequences of the given `lengths`, padded to
/// `max_len`: shape `[lengths.len(), max_len]`, 0 at `j < lengths[b]` and −∞ after.
/// Built on the host (it is `batch × max_len` values) and uploaded in `dtype`.
/// A length above `max_len` is an error.
pub fn additive_mask_from_lengths(
    device: &Device,
    lengths: &[u32],
    max_len: usize,
    dtype: DType,
) -> Result<Tensor> {
    let op = "additive_mask_from_lengths";
    if let Some((b, &l)) = lengths
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize > max_len)
    {
        return Err(Error::Argument {
            op,
            name: "lengths",
            value: format!("{l} at batch index {b} (max_len {max_len})"),
            expected: "every length at most max_len; pad to the longest sequence",
        });
    }
    let v: Vec<f32> = lengths
        .iter()
        .flat_map(|&l| {
            (0..max_len).map(move |j| {
                if j < l as usize {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_f32(device, &v, &[lengths.len(), max_len], dtype)
}
