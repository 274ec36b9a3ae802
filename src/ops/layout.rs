//! Layout: permute / transpose and concat (copies into new contiguous tensors), and the
//! views and splits narrow, slice, split and chunk.
//!
//! Values are copied bit for bit (NaN payloads included on the CPU and for buffer
//! copies; GPU kernels may quieten signalling NaNs in 16-bit data).
//!
//! # Views and copies
//!
//! [`narrow`], [`slice`](fn@slice), [`split`] and [`chunk`] select a block of `x`. When
//! the block is one contiguous run of `x`'s memory, the result is a **view**: it shares
//! `x`'s storage at an element offset ([`Tensor::offset`]) and nothing is copied.
//! Otherwise the result is a fresh tensor filled by **one copy pass**. Precisely:
//!
//! | case | CPU | GPU |
//! |---|---|---|
//! | contiguous block (see below) | view | view when its byte offset is a multiple of the adapter's `min_storage_buffer_offset_alignment` (often 256 B, 16–64 B on some), else one buffer copy (f32/u32, 16-bit at an even element) or one copy kernel (16-bit at an odd element) |
//! | strided block (any dtype) | one copy pass | one strided-copy kernel pass (u32: bit exact, through the kernel's u32 variant) |
//! | empty result | view (no data) | view (no data) |
//!
//! A block is contiguous when every dimension before the last one it narrows is taken
//! whole or at a single index: `narrow` along dimension 0 (or along any dimension whose
//! leading dimensions all have size 1), a full-range `narrow`, `slice` of the leading
//! dimensions with single indices before the last sliced one, `split`/`chunk` along
//! dimension 0. Typical cases:
//!
//! * a fused QKV projection `[tokens, 3 * hidden]` split along the last dimension: three
//!   strided parts, **one copy pass per part** (three passes, each reading only its third).
//!   Laid out as `[3, tokens, hidden]` (or a weight stacked along dimension 0), the split
//!   along dimension 0 gives three views.
//! * a stacked gate-up projection `[tokens, 2 * ffn]` split in two along the last
//!   dimension: one copy pass per half; a stacked gate-up *weight* `[2 * ffn, hidden]`
//!   split along dimension 0: two views (used directly as `linear` weights).
//!
//! Views only alias for reading: every op writes a fresh output tensor, so writing into a
//! view's parent cannot happen through openkern, and a view stays valid after its parent
//! handle drops (it holds the storage). The one in-place writer, a
//! [`KvCache`](crate::ops::kv_cache::KvCache), owns its storage; a view of its keys reads
//! it like a clone does.

use super::dispatch;
use crate::device::Backend;
use crate::error::{Error, Result};
use crate::shape::{check_rank, contiguous_strides};
use crate::tensor::Tensor;
use std::ops::Range;

/// `y[i_0, .., i_{r-1}] = x[..]` with `y.shape[k] = x.shape[perm[k]]`: dimension `k` of
/// the result is dimension `perm[k]` of `x`. `perm` must be a permutation of `0..rank`.
/// Any dtype; u32 tensors (token ids) are copied bit for bit on every backend.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let op = "permute";
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
/// must match. Any dtype; u32 tensors are copied bit for bit on every backend.
pub fn concat(xs: &[&Tensor], dim: usize) -> Result<Tensor> {
    let op = "concat";
    let Some(first) = xs.first() else {
        return Err(Error::shape(op, "no tensors given; pass at least one"));
    };
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

/// Elements `start..start + len` of dimension `dim` of `x` (PyTorch's `narrow`): the
/// result has `x`'s shape with dimension `dim` set to `len`. A view of `x` when the block
/// is contiguous, else one copy pass (see the [module docs](self) for which is which).
/// Any dtype. `dim` must be below `x`'s rank ([`Error::Shape`]) and
/// `start + len` at most `x.shape()[dim]` ([`Error::RangeOutOfBounds`]); `len` may be 0.
pub fn narrow(x: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
    let op = "narrow";
    check_dim(op, x, dim)?;
    let mut ranges: Vec<Range<usize>> = x.shape()[..dim].iter().map(|&s| 0..s).collect();
    ranges.push(start..start.saturating_add(len));
    block(op, x, &ranges)
}

/// The block of `x` given by `ranges` over its leading dimensions: dimension `i` keeps
/// elements `ranges[i]`, the dimensions past `ranges.len()` are kept whole
/// (`slice(&x, &[2..5])` is `x[2:5]` in NumPy, `slice(&x, &[0..1, 3..7])` is `x[0:1, 3:7]`).
/// The result has the same rank as `x`. A view of `x` when the block is contiguous (every
/// range before the last partial one holds a single index), else one copy pass (see the
/// [module docs](self)). Any dtype. At most `x.rank()` ranges ([`Error::Shape`]); each must
/// satisfy `start <= end <= size` ([`Error::RangeOutOfBounds`]); empty ranges give empty
/// results.
pub fn slice(x: &Tensor, ranges: &[Range<usize>]) -> Result<Tensor> {
    let op = "slice";
    if ranges.len() > x.rank() {
        return Err(Error::shape(
            op,
            format!(
                "{} ranges given for x of shape {:?}; pass at most one range per dimension ({})",
                ranges.len(),
                x.shape(),
                x.rank()
            ),
        ));
    }
    block(op, x, ranges)
}

/// `x` cut along dimension `dim` into consecutive parts of `sizes[i]` elements (PyTorch's
/// `split` with a list): `sizes` must sum to `x.shape()[dim]` ([`Error::Shape`] otherwise).
/// Each part is a view or one copy pass as for [`narrow`] (along dimension 0: all views;
/// along the last dimension of `[tokens, 3 * hidden]`, a fused QKV projection: one copy
/// pass per part).
pub fn split(x: &Tensor, sizes: &[usize], dim: usize) -> Result<Vec<Tensor>> {
    let op = "split";
    check_dim(op, x, dim)?;
    let size = x.shape()[dim];
    let total = sizes.iter().try_fold(0usize, |a, &b| a.checked_add(b));
    if total != Some(size) {
        return Err(Error::shape(
            op,
            format!(
                "sizes {sizes:?} sum to {} but dimension {dim} of x (shape {:?}) has {size} elements; give sizes that sum to {size}",
                total.map_or("more than usize::MAX".to_string(), |t| t.to_string()),
                x.shape()
            ),
        ));
    }
    let mut start = 0;
    let mut parts = Vec::with_capacity(sizes.len());
    for &len in sizes {
        parts.push(narrow(x, dim, start, len)?);
        start += len;
    }
    Ok(parts)
}

/// `x` cut along dimension `dim` into `n` parts of `ceil(size / n)` elements, the last
/// one smaller when `n` does not divide the size (PyTorch's `chunk`: so there may be
/// fewer than `n` parts, e.g. a size of 5 in 4 chunks gives 2, 2, 1). A size of 0 gives
/// `n` empty parts. `n` must be at least 1 ([`Error::Argument`]). Views or one copy pass
/// per part as for [`split`]: `chunk(&qkv, 3, 1)` splits a fused `[tokens, 3 * hidden]`
/// projection into q, k and v.
pub fn chunk(x: &Tensor, n: usize, dim: usize) -> Result<Vec<Tensor>> {
    let op = "chunk";
    if n == 0 {
        return Err(Error::Argument {
            op,
            name: "n",
            value: "0".into(),
            expected: "at least 1 part",
        });
    }
    check_dim(op, x, dim)?;
    let size = x.shape()[dim];
    if size == 0 {
        return split(x, &vec![0; n], dim);
    }
    let step = size.div_ceil(n);
    let sizes: Vec<usize> = (0..size)
        .step_by(step)
        .map(|s| step.min(size - s))
        .collect();
    split(x, &sizes, dim)
}

fn check_dim(op: &'static str, x: &Tensor, dim: usize) -> Result<()> {
    if dim >= x.rank() {
        return Err(Error::shape(
            op,
            format!(
                "dimension {dim} does not exist in x of shape {:?}; pass a dim below {}",
                x.shape(),
                x.rank()
            ),
        ));
    }
    Ok(())
}

/// The block of `x` that `ranges` select over its leading dimensions: a view where it is
/// contiguous and the backend can address it, else one copy pass.
fn block(op: &'static str, x: &Tensor, ranges: &[Range<usize>]) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    let strides = contiguous_strides(x.shape());
    let mut offset = 0;
    for (d, r) in ranges.iter().enumerate() {
        let size = x.shape()[d];
        if r.start > r.end || r.end > size {
            return Err(Error::RangeOutOfBounds {
                op,
                dim: d,
                start: r.start,
                end: r.end,
                size,
                shape: x.shape().to_vec(),
            });
        }
        shape[d] = r.len();
        offset += r.start * strides[d];
    }
    if shape.contains(&0) {
        return Ok(x.view_at(0, &shape));
    }
    // contiguous: every range before the last partial one holds one index
    let last_partial = ranges
        .iter()
        .enumerate()
        .rposition(|(d, r)| r.len() != x.shape()[d]);
    let contiguous = match last_partial {
        None => true,
        Some(j) => ranges[..j].iter().all(|r| r.len() == 1),
    };
    if contiguous {
        let bindable = match &x.device().inner.backend {
            Backend::Cpu => true,
            Backend::Gpu(g) => crate::gpu::layout::bindable_at(
                g,
                x.byte_offset() + offset * x.dtype().size_in_bytes(),
            ),
        };
        if bindable {
            return Ok(x.view_at(offset, &shape));
        }
    }
    // one copy pass: the block as runs over collapsed dimensions
    let (runs, run_strides) = collapse(&shape, &strides);
    check_rank(op, &runs)?;
    dispatch::run1(
        op,
        &[x],
        &shape,
        x.dtype(),
        |g, out| crate::gpu::layout::strided_copy(g, x, offset, &runs, &run_strides, out),
        || {
            Ok(crate::cpu::layout::permute(
                x.cpu_storage().skip(offset),
                &runs,
                &run_strides,
            ))
        },
    )
}

/// `shape` read with `strides`, with each dimension merged into the next where the two
/// walk memory as one (so a block of rank 8 or more still copies with a short walk).
fn collapse(shape: &[usize], strides: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut dims: Vec<usize> = Vec::with_capacity(shape.len());
    let mut st: Vec<usize> = Vec::with_capacity(shape.len());
    for (&n, &s) in shape.iter().zip(strides) {
        if n == 1 {
            continue;
        }
        match (dims.last_mut(), st.last()) {
            (Some(dn), Some(&ds)) if ds == s * n => {
                *dn *= n;
                *st.last_mut().expect("nonempty") = s;
            }
            _ => {
                dims.push(n);
                st.push(s);
            }
        }
    }
    if dims.is_empty() {
        dims.push(1);
        st.push(1);
    }
    (dims, st)
}
