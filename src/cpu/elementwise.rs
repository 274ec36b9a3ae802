//! CPU twin of `shaders/elementwise.wgsl`.

use super::{CpuStorage, PARALLEL_MIN};
use crate::ops::elementwise::BinaryOp;
use crate::shape::{broadcast_strides, contiguous_strides};
use rayon::prelude::*;

fn apply(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
    }
}

/// `lhs op rhs` broadcast to `out_shape`; `rhs` is None for a scalar operand.
pub(crate) fn binary(
    op: BinaryOp,
    lhs: (&CpuStorage, &[usize]),
    rhs: Result<(&CpuStorage, &[usize]), f32>,
    out_shape: &[usize],
) -> CpuStorage {
    let a = lhs.0.to_f32();
    let n: usize = out_shape.iter().product();
    let mut out = vec![0f32; n];
    match rhs {
        Err(s) => out
            .par_iter_mut()
            .with_min_len(PARALLEL_MIN)
            .zip(a.par_iter())
            .for_each(|(o, &x)| *o = apply(op, x, s)),
        Ok((r, rshape)) if rshape == lhs.1 => {
            let b = r.to_f32();
            out.par_iter_mut()
                .with_min_len(PARALLEL_MIN)
                .zip(a.par_iter().zip(b.par_iter()))
                .for_each(|(o, (&x, &y))| *o = apply(op, x, y));
        }
        Ok((r, rshape)) => {
            let b = r.to_f32();
            let ls = broadcast_strides(lhs.1, out_shape);
            let rs = broadcast_strides(rshape, out_shape);
            let os = contiguous_strides(out_shape);
            out.par_iter_mut()
                .with_min_len(PARALLEL_MIN)
                .enumerate()
                .for_each(|(i, o)| {
                    let (mut li, mut ri) = (0, 0);
                    for d in 0..out_shape.len() {
                        let c = (i / os[d]) % out_shape[d];
                        li += c * ls[d];
                        ri += c * rs[d];
                    }
                    *o = apply(op, a[li], b[ri]);
                });
        }
    }
    CpuStorage::from_f32(lhs.0.dtype(), out)
}
