//! CPU twin of `shaders/elementwise.wgsl`. Blocks of the output are computed in f32
//! buffers that stay in L1 (16-bit inputs widened, the result narrowed, once per block),
//! with one vectorised loop per op. A right operand that repeats along the leading
//! dimensions (a bias row, a scalar) is walked row by row, without index arithmetic per
//! element; only general broadcasting computes a strided index per element.

use super::math::{each, each2, narrow, widen};
use super::unary::{map_pair_blocks, BLOCK, SUB_BLOCK};
use super::{take, CpuStorage, Pooled};
use crate::dtype::Element;
use crate::ops::elementwise::BinaryOp;
use crate::shape::{broadcast_strides, contiguous_strides};
use crate::tensor::CpuSlice;
use rayon::prelude::*;

#[inline(always)]
fn apply_slices(op: BinaryOp, a: &mut [f32], b: &[f32]) {
    match op {
        BinaryOp::Add => each2(a, b, |x, y| x + y),
        BinaryOp::Sub => each2(a, b, |x, y| x - y),
        BinaryOp::Mul => each2(a, b, |x, y| x * y),
        BinaryOp::Div => each2(a, b, |x, y| x / y),
    }
}

#[inline(always)]
fn apply_scalar(op: BinaryOp, a: &mut [f32], s: f32) {
    match op {
        BinaryOp::Add => each(a, |x| x + s),
        BinaryOp::Sub => each(a, |x| x - s),
        BinaryOp::Mul => each(a, |x| x * s),
        BinaryOp::Div => each(a, |x| x / s),
    }
}

fn apply(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
    }
}

/// True when `small`, without its leading 1s, equals the trailing dimensions of `out`:
/// then element i of `out` pairs with element i % len(small).
fn repeats_along_leading_dims(small: &[usize], out: &[usize]) -> bool {
    let first = small.iter().position(|&d| d != 1).unwrap_or(small.len());
    let core = &small[first..];
    core.len() <= out.len() && out[out.len() - core.len()..] == *core
}

fn run<T: Element + Pooled>(
    op: BinaryOp,
    a: &[T],
    lshape: &[usize],
    rhs: Result<(CpuSlice<'_>, &[usize]), f32>,
    out_shape: &[usize],
) -> Vec<T> {
    let n: usize = out_shape.iter().product();
    let mut out = take::<T>(n);
    if n == 0 {
        return out;
    }
    let same_lhs = lshape == out_shape;
    match rhs {
        Err(s) => out
            .par_chunks_mut(BLOCK)
            .zip(a.par_chunks(BLOCK))
            .for_each(|(o, xs)| {
                // 1 KiB sub-blocks stay in L1 (a BLOCK-sized buffer, zeroed per task,
                // spilled to L2)
                let mut buf = [0f32; SUB_BLOCK];
                for (oc, xc) in o.chunks_mut(SUB_BLOCK).zip(xs.chunks(SUB_BLOCK)) {
                    let buf = &mut buf[..xc.len()];
                    widen(xc, buf);
                    apply_scalar(op, buf, s);
                    narrow(buf, oc);
                }
            }),
        Ok((r, rshape)) if rshape == lshape => {
            let b = r.as_slice::<T>();
            out.par_chunks_mut(BLOCK)
                .zip(a.par_chunks(BLOCK).zip(b.par_chunks(BLOCK)))
                .for_each(|(o, (xs, ys))| {
                    map_pair_blocks(o, xs, ys, |p, q| apply_slices(op, p, q));
                });
        }
        Ok((r, rshape)) if same_lhs && repeats_along_leading_dims(rshape, out_shape) => {
            // a row of `len` repeated: widen it once, then whole rows in blocks
            let row = r.to_f32();
            let len = row.len().max(1);
            let rows_per = (BLOCK / len).max(1);
            out.par_chunks_mut(rows_per * len)
                .zip(a.par_chunks(rows_per * len))
                .for_each(|(o, xs)| {
                    let mut buf = [0f32; SUB_BLOCK];
                    for (or, xr) in o.chunks_mut(len).zip(xs.chunks(len)) {
                        for ((oc, xc), rc) in or
                            .chunks_mut(SUB_BLOCK)
                            .zip(xr.chunks(SUB_BLOCK))
                            .zip(row.chunks(SUB_BLOCK))
                        {
                            let p = &mut buf[..xc.len()];
                            widen(xc, p);
                            apply_slices(op, p, rc);
                            narrow(p, oc);
                        }
                    }
                });
        }
        Ok((r, rshape)) => {
            let av = widen_all(a);
            let b = r.to_f32();
            let ls = broadcast_strides(lshape, out_shape);
            let rs = broadcast_strides(rshape, out_shape);
            let os = contiguous_strides(out_shape);
            out.par_chunks_mut(BLOCK).enumerate().for_each(|(blk, o)| {
                let mut buf = [0f32; BLOCK];
                let buf = &mut buf[..o.len()];
                for (k, v) in buf.iter_mut().enumerate() {
                    let i = blk * BLOCK + k;
                    let (mut li, mut ri) = (0, 0);
                    for d in 0..out_shape.len() {
                        let c = (i / os[d]) % out_shape[d];
                        li += c * ls[d];
                        ri += c * rs[d];
                    }
                    *v = apply(op, av[li], b[ri]);
                }
                narrow(buf, o);
            });
        }
    }
    out
}

fn widen_all<T: Element>(a: &[T]) -> Vec<f32> {
    let mut v = vec![0f32; a.len()];
    widen(a, &mut v);
    v
}

/// `lhs op rhs` broadcast to `out_shape`; `rhs` is `Err(scalar)` for a scalar operand.
pub(crate) fn binary(
    op: BinaryOp,
    lhs: (CpuSlice<'_>, &[usize]),
    rhs: Result<(CpuSlice<'_>, &[usize]), f32>,
    out_shape: &[usize],
) -> CpuStorage {
    match lhs.0 {
        CpuSlice::F32(v) => CpuStorage::F32(run(op, v, lhs.1, rhs, out_shape)),
        CpuSlice::F16(v) => CpuStorage::F16(run(op, v, lhs.1, rhs, out_shape)),
        CpuSlice::BF16(v) => CpuStorage::BF16(run(op, v, lhs.1, rhs, out_shape)),
        CpuSlice::U32(_) => unreachable!("elementwise ops refuse u32 before dispatch"),
    }
}
