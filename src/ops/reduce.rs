//! Reductions over the last dimension: sum, mean, max, argmax. The result drops the
//! last dimension (`[.., n]` → `[..]`); sums accumulate in f32.
//!
//! Special values: sum and mean follow IEEE arithmetic (a NaN gives NaN, +∞ and −∞ give
//! NaN together). max returns NaN when the row holds a NaN; argmax returns the index of
//! the first NaN in that case (NumPy's rule), otherwise the first index of the maximum
//! (−0 and +0 tie).

use super::dispatch;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Which reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Reduction {
    /// Σ x
    Sum = 0,
    /// Σ x / n
    Mean = 1,
    /// max x
    Max = 2,
    /// index of the max (u32 output)
    ArgMax = 3,
}

impl Reduction {
    /// The reduction's name in errors and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Sum => "sum",
            Reduction::Mean => "mean",
            Reduction::Max => "max",
            Reduction::ArgMax => "argmax",
        }
    }
}

/// Sum over the last dimension.
pub fn sum(x: &Tensor) -> Result<Tensor> {
    reduce(Reduction::Sum, x)
}

/// Mean over the last dimension.
pub fn mean(x: &Tensor) -> Result<Tensor> {
    reduce(Reduction::Mean, x)
}

/// Maximum over the last dimension.
pub fn max(x: &Tensor) -> Result<Tensor> {
    reduce(Reduction::Max, x)
}

/// Index of the maximum over the last dimension, as a u32 tensor (greedy decoding).
pub fn argmax(x: &Tensor) -> Result<Tensor> {
    reduce(Reduction::ArgMax, x)
}

/// A reduction over the last dimension; the output drops it. Sum, mean and max keep
/// x's dtype; argmax gives u32.
pub fn reduce(op: Reduction, x: &Tensor) -> Result<Tensor> {
    let name = op.name();
    x.expect_float(name)?;
    if x.rank() == 0 || x.shape()[x.rank() - 1] == 0 {
        return Err(Error::shape(
            name,
            format!(
                "x has shape {:?}; reducing over the last dimension needs it to be at least 1",
                x.shape()
            ),
        ));
    }
    let n = x.shape()[x.rank() - 1];
    let shape = &x.shape()[..x.rank() - 1];
    let cpu = || Ok(crate::cpu::reduce::reduce(op, x.cpu_storage(), n));
    if op == Reduction::ArgMax {
        // The kernel writes the row maxima beside the indices; only the indices return.
        // The maxima's buffer goes back to the pool on drop, and the pool hands it only to
        // work recorded later, which runs after this pass.
        return dispatch::run1(
            name,
            x.device(),
            shape,
            DType::U32,
            |g, idx| {
                let maxima = Tensor::uninit(x.device(), shape, x.dtype(), name)?;
                crate::gpu::reduce::reduce(g, op, x, n, &maxima, Some(idx))
            },
            cpu,
        );
    }
    dispatch::run1(
        name,
        x.device(),
        shape,
        x.dtype(),
        |g, y| crate::gpu::reduce::reduce(g, op, x, n, y, None),
        cpu,
    )
}
