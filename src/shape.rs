//! Shapes, strides and broadcasting: the arithmetic every op's checks share.

use crate::error::{Error, Result};

/// Most dimensions a GPU kernel's index arithmetic handles; higher ranks are refused.
pub const MAX_RANK: usize = 8;

/// Number of elements of a shape (1 for a scalar shape `[]`).
pub fn element_count(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The element count of `shape`, or [`Error::ShapeOverflow`] where it (or its size in
/// bytes at 4 bytes an element) does not fit `usize`: such a shape would otherwise wrap
/// to a small or empty tensor. Checked wherever a tensor's shape is formed.
pub fn checked_count(op: &'static str, shape: &[usize]) -> crate::Result<usize> {
    if shape.contains(&0) {
        return Ok(0);
    }
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|n| n.checked_mul(4).is_some())
        .ok_or_else(|| crate::Error::ShapeOverflow {
            op,
            shape: shape.to_vec(),
        })
}

/// Row-major (C order) strides of a contiguous shape, in elements.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// The NumPy broadcast of two shapes.
pub fn broadcast_shapes(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Result<Vec<usize>> {
    let rank = lhs.len().max(rhs.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let l = if i < lhs.len() {
            lhs[lhs.len() - 1 - i]
        } else {
            1
        };
        let r = if i < rhs.len() {
            rhs[rhs.len() - 1 - i]
        } else {
            1
        };
        out[rank - 1 - i] = match (l, r) {
            (a, b) if a == b => a,
            (1, b) => b,
            (a, 1) => a,
            _ => {
                return Err(Error::Broadcast {
                    op,
                    lhs: lhs.to_vec(),
                    rhs: rhs.to_vec(),
                    dim: i,
                    lhs_dim: l,
                    rhs_dim: r,
                })
            }
        };
    }
    Ok(out)
}

/// Strides (in elements) that read a contiguous tensor of `shape` as if it had the
/// broadcast shape `out`: size-1 and missing dimensions get stride 0.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let own = contiguous_strides(shape);
    let offset = out.len() - shape.len();
    (0..out.len())
        .map(|d| {
            if d < offset || shape[d - offset] == 1 {
                0
            } else {
                own[d - offset]
            }
        })
        .collect()
}

/// Checks that a rank fits the kernels' index arithmetic.
pub fn check_rank(op: &'static str, shape: &[usize]) -> Result<()> {
    if shape.len() > MAX_RANK {
        return Err(Error::shape(
            op,
            format!(
                "rank {} is above the supported {MAX_RANK}; merge adjacent dimensions with reshape",
                shape.len()
            ),
        ));
    }
    Ok(())
}

/// Dimensions or strides as the fixed `[u32; MAX_RANK]` arrays kernel params carry,
/// zero-filled past `v.len()`.
pub(crate) fn pad_rank(v: &[usize]) -> [u32; MAX_RANK] {
    let mut out = [0u32; MAX_RANK];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = x as u32;
    }
    out
}
