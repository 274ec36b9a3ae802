//! CPU twin of `shaders/unary.wgsl` (same special values). Blocks of the input are
//! widened into an f32 buffer in L1, mapped by a loop specialised per op (no function
//! pointer per element), and narrowed once.

use super::math::{each, exp, narrow, widen};
use super::{take, CpuStorage, Pooled};
use crate::dtype::Element;
use crate::ops::unary::UnaryOp;
use crate::tensor::CpuSlice;
use rayon::prelude::*;

/// Elements per rayon task: widened into an f32 block that stays in L1.
pub(crate) const BLOCK: usize = 4096;

/// exp with IEEE ends (NaN stays NaN, overflow gives ∞, exp(−∞) = 0) and no branches.
#[inline(always)]
pub(crate) fn exp_ieee(x: f32) -> f32 {
    let e = exp(x);
    let e = if x > 88.722_83 { f32::INFINITY } else { e };
    if x.is_nan() {
        x
    } else {
        e
    }
}

/// `out[i] = f(x[i])` in f32 blocks; `f` maps a whole widened block in place, so each
/// op's loop is compiled (and vectorised) on its own.
pub(crate) fn map_blocks<T: Element + Pooled>(x: &[T], f: impl Fn(&mut [f32]) + Sync) -> Vec<T> {
    let mut out = take::<T>(x.len());
    out.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .for_each(|(o, xs)| {
            let mut buf = [0f32; BLOCK];
            let buf = &mut buf[..xs.len()];
            widen(xs, buf);
            f(buf);
            narrow(buf, o);
        });
    out
}

fn run<T: Element + Pooled>(op: UnaryOp, x: &[T]) -> Vec<T> {
    match op {
        UnaryOp::Exp => map_blocks(x, |b| each(b, exp_ieee)),
        UnaryOp::Log => map_blocks(x, |b| each(b, f32::ln)),
        UnaryOp::Sqrt => map_blocks(x, |b| each(b, f32::sqrt)),
        UnaryOp::Rsqrt => map_blocks(x, |b| each(b, |v| 1.0 / v.sqrt())),
        UnaryOp::Neg => map_blocks(x, |b| each(b, |v| -v)),
        UnaryOp::Abs => map_blocks(x, |b| each(b, f32::abs)),
        UnaryOp::Tanh => map_blocks(x, |b| each(b, f32::tanh)),
        UnaryOp::Sigmoid => map_blocks(x, |b| each(b, |v| 1.0 / (1.0 + exp_ieee(-v)))),
        // NaN passes through (PyTorch's clamp): compare, don't use f32::max
        UnaryOp::Clamp { min, max } => map_blocks(x, |b| {
            each(b, |v| {
                let v = if v < min { min } else { v };
                if v > max {
                    max
                } else {
                    v
                }
            })
        }),
        UnaryOp::AdditiveMask => map_blocks(x, |b| {
            each(b, |v| if v != 0.0 { 0.0 } else { f32::NEG_INFINITY })
        }),
    }
}

pub(crate) fn unary(op: UnaryOp, x: CpuSlice<'_>) -> CpuStorage {
    match x {
        CpuSlice::F32(v) => CpuStorage::F32(run(op, v)),
        CpuSlice::F16(v) => CpuStorage::F16(run(op, v)),
        CpuSlice::BF16(v) => CpuStorage::BF16(run(op, v)),
        CpuSlice::U32(_) => unreachable!("unary ops refuse u32 before dispatch"),
    }
}
