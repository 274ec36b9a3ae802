//! Layout copies into new contiguous tensors: permute / transpose, and concat.
//! Values are copied bit for bit (NaN payloads included on the CPU; GPUs may quieten
//! signalling NaNs in 16-bit data).

use super::dispatch;
use crate::error::{Error, Result};
use crate::shape::{check_rank, contiguous_strides};
use crate::tensor::Tensor;

/// `y[i_0, .., i_{r-1}] = x[..]` with `y.shape[k] = x.shape[perm[k]]`: dimension `k` of
/// the result is dimension `perm[k]` of `x`. `perm` must be a permutation of `0..rank`.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let op = "permute";
    x.expect_float(op)?;
    check_rank(op, x.shape())?;
    let r = x.rank();
    let mut seen = vec![false; r];
    let valid = perm.len() == r
        && perm
            .iter()
            .all(|&p| p < r && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return Err(Error::shape(
            op,
            format!(
                "{perm:?} is not a permutation of the {r} dimensions 0..{r} of x (shape {:?})",
                x.shape()
            ),
        ));
    }
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let xs = contiguous_strides(x.shape());
    let src_strides: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
    if perm.iter().enumerate().all(|(k, &p)| k == p) {
        return Ok(x.clone());
    }
    dispatch::run1(
        op,
        &[x],
        &shape,
        x.dtype(),
        |g, out| crate::gpu::layout::permute(g, x, &shape, &src_strides, out),
        || {
            Ok(crate::cpu::layout::permute(
                x.cpu_storage(),
                &shape,
                &src_strides,
            ))
        },
    )
}

/// Swaps dimensions `a` and `b` (a contiguous copy).
pub fn transpose(x: &Tensor, a: usize, b: usize) -> Result<Tensor> {
    let r = x.rank();
    if a >= r || b >= r {
        return Err(Error::shape(
            "transpose",
            format!(
                "dimensions {a} and {b} do not both exist in x of shape {:?}",
                x.shape()
            ),
        ));
    }
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(a, b);
    permute(x, &perm)
}

/// Joins tensors along dimension `dim`; all other dimensions, the dtype and the device
/// must match.
pub fn concat(xs: &[&Tensor], dim: usize) -> Result<Tensor> {
    let op = "concat";
    let Some(first) = xs.first() else {
        return Err(Error::shape(op, "no tensors given; pass at least one"));
    };
    first.expect_float(op)?;
    let r = first.rank();
    if dim >= r {
        return Err(Error::shape(
            op,
            format!("dimension {dim} does not exist in tensors of rank {r}"),
        ));
    }
    let mut total = 0;
    for (k, t) in xs.iter().enumerate() {
        dispatch::same_device_and_dtype(op, first, [*t])?;
        let matches = t.rank() == r && (0..r).all(|d| d == dim || t.shape()[d] == first.shape()[d]);
        if !matches {
            return Err(Error::shape(
                op,
                format!(
                    "tensor {k} has shape {:?} but tensor 0 has {:?}; all dimensions except {dim} must match",
                    t.shape(),
                    first.shape()
                ),
            ));
        }
        total += t.shape()[dim];
    }
    let mut shape = first.shape().to_vec();
    shape[dim] = total;
    let inner: usize = shape[dim + 1..].iter().product();
    dispatch::run1(
        op,
        xs,
        &shape,
        first.dtype(),
        |g, out| {
            let mut offset = 0;
            for t in xs {
                // an empty part adds nothing: no pass for it
                if !t.is_empty() {
                    crate::gpu::layout::concat_part(
                        g,
                        t,
                        t.shape()[dim] * inner,
                        total * inner,
                        offset * inner,
                        out,
                    )?;
                }
                offset += t.shape()[dim];
            }
            Ok(())
        },
        || {
            let parts: Vec<_> = xs
                .iter()
                .map(|t| (t.cpu_storage(), t.shape()[dim] * inner))
                .collect();
            Ok(crate::cpu::layout::concat(
                &parts,
                total * inner,
                first.dtype(),
            ))
        },
    )
}
