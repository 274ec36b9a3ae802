//! Reductions: sum, mean, max, min, argmax, over the last dimension ([`reduce`], [`sum`],
//! ...) or over any dimension with or without keeping it ([`reduce_dim`], [`sum_dim`],
//! ...). Without keepdim the result drops the reduced dimension (`[.., n]` → `[..]`);
//! with it the dimension stays as 1. Sums accumulate in f32.
//!
//! Over a dimension other than the last, the CPU backend reduces in place (strided
//! rows, vectorised along the contiguous inner dimension); the GPU backend first moves
//! the dimension last with one copy pass ([`permute`](super::permute)).
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
    /// min x
    Min = 4,
}

impl Reduction {
    /// The reduction's name in errors and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Sum => "sum",
            Reduction::Mean => "mean",
            Reduction::Max => "max",
            Reduction::ArgMax => "argmax",
            Reduction::Min => "min",
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

/// Minimum over the last dimension.
pub fn min(x: &Tensor) -> Result<Tensor> {
    reduce(Reduction::Min, x)
}

/// Index of the maximum over the last dimension, as a u32 tensor (greedy decoding).
pub fn argmax(x: &Tensor) -> Result<Tensor> {
    reduce(Reduction::ArgMax, x)
}

/// A reduction over the last dimension; the output drops it. Sum, mean, max and min
/// keep x's dtype; argmax gives u32.
pub fn reduce(op: Reduction, x: &Tensor) -> Result<Tensor> {
    if x.rank() == 0 {
        return Err(Error::shape(
            op.name(),
            "x is a scalar; reducing over the last dimension needs it to be at least 1: reshape x to [1]",
        ));
    }
    reduce_dim(op, x, x.rank() - 1, false)
}

/// Sum over dimension `dim`; `keepdim` keeps it as size 1.
pub fn sum_dim(x: &Tensor, dim: usize, keepdim: bool) -> Result<Tensor> {
    reduce_dim(Reduction::Sum, x, dim, keepdim)
}

/// Mean over dimension `dim`; `keepdim` keeps it as size 1.
pub fn mean_dim(x: &Tensor, dim: usize, keepdim: bool) -> Result<Tensor> {
    reduce_dim(Reduction::Mean, x, dim, keepdim)
}

/// Maximum over dimension `dim`; `keepdim` keeps it as size 1.
pub fn max_dim(x: &Tensor, dim: usize, keepdim: bool) -> Result<Tensor> {
    reduce_dim(Reduction::Max, x, dim, keepdim)
}

/// Minimum over dimension `dim`; `keepdim` keeps it as size 1.
pub fn min_dim(x: &Tensor, dim: usize, keepdim: bool) -> Result<Tensor> {
    reduce_dim(Reduction::Min, x, dim, keepdim)
}

/// Index (u32) of the maximum over dimension `dim`; `keepdim` keeps it as size 1.
pub fn argmax_dim(x: &Tensor, dim: usize, keepdim: bool) -> Result<Tensor> {
    reduce_dim(Reduction::ArgMax, x, dim, keepdim)
}

/// A reduction over dimension `dim` of `x`. The output has x's shape without `dim`
/// (or with it as 1 under `keepdim`); sum, mean, max and min keep x's dtype, argmax
/// gives u32. `dim` must exist and have at least one element.
pub fn reduce_dim(op: Reduction, x: &Tensor, dim: usize, keepdim: bool) -> Result<Tensor> {
    let name = op.name();
    x.expect_float(name)?;
    if dim >= x.rank() {
        return Err(Error::shape(
            name,
            format!(
                "dimension {dim} does not exist in x of shape {:?} (rank {}); pick one of 0..{}",
                x.shape(),
                x.rank(),
                x.rank()
            ),
        ));
    }
    let n = x.shape()[dim];
    if n == 0 {
        return Err(Error::shape(
            name,
            format!(
                "x has shape {:?}; dimension {dim} has no elements to reduce over",
                x.shape()
            ),
        ));
    }
    let outer: usize = x.shape()[..dim].iter().product();
    let inner: usize = x.shape()[dim + 1..].iter().product();
    let mut shape = x.shape().to_vec();
    if keepdim {
        shape[dim] = 1;
    } else {
        shape.remove(dim);
    }
    if !x.device().is_cpu() {
        if inner != 1 {
            // the row kernels reduce the last dimension: move `dim` last (one copy)
            let mut perm: Vec<usize> = (0..x.rank()).filter(|&d| d != dim).collect();
            perm.push(dim);
            let moved = super::permute(x, &perm)?;
            return reduce_dim(op, &moved, x.rank() - 1, false)?.reshape(&shape);
        }
        if op == Reduction::Min {
            // min x = −max(−x): exact, NaN kept
            let m = reduce_dim(Reduction::Max, &super::neg(x)?, dim, keepdim)?;
            return super::neg(&m);
        }
    }
    let cpu = || {
        Ok(crate::cpu::reduce::reduce(
            op,
            x.cpu_storage(),
            outer,
            n,
            inner,
        ))
    };
    if op == Reduction::ArgMax {
        // The kernel writes the row maxima beside the indices; only the indices return.
        // The maxima's buffer goes back to the pool on drop, and the pool hands it only to
        // work recorded later, which runs after this pass.
        return dispatch::run1(
            name,
            &[x],
            &shape,
            DType::U32,
            |g, idx| {
                let maxima = Tensor::uninit(x.device(), &shape, x.dtype(), name)?;
                crate::gpu::reduce::reduce(g, op, x, n, &maxima, Some(idx))
            },
            cpu,
        );
    }
    dispatch::run1(
        name,
        &[x],
        &shape,
        x.dtype(),
        |g, y| crate::gpu::reduce::reduce(g, op, x, n, y, None),
        cpu,
    )
}
