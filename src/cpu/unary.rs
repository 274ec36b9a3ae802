//! CPU twin of `shaders/unary.wgsl` (same special values). Blocks of the input are
//! widened into an f32 buffer in L1, mapped by a loop specialised per op (no function
//! pointer per element), and narrowed once.

use super::lanes::{self, LaneOp};
use super::math::{each_into, exp, narrow, widen};
use super::table16::{self, Slot};
use super::{take, CpuStorage, Pooled};
use crate::dtype::{DType, Element};
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

/// `out[i] = f(x[i])` in f32 blocks: `f(src, dst)` maps a whole block, so each op's loop
/// is compiled (and vectorised) on its own. f32 data is mapped straight from the input
/// into the output; 16-bit data is widened into an L1 block, mapped into a second one,
/// and narrowed.
pub(crate) fn map_blocks<T: Element + Pooled>(
    x: &[T],
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Vec<T> {
    map_lanes_or_blocks(x, None, f)
}

/// [`map_blocks`], but f16 data goes straight through the 8-lane form `lane` where the
/// CPU has it: widened, mapped and narrowed in registers, no block buffers.
pub(crate) fn map_lanes_or_blocks<T: Element + Pooled>(
    x: &[T],
    lane: Option<LaneOp>,
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Vec<T> {
    let mut out = take::<T>(x.len());
    if let (Some(op), DType::F16, true) = (lane, T::DTYPE, lanes::available_f16()) {
        let src: &[u16] = bytemuck::cast_slice(x);
        let dst: &mut [u16] = bytemuck::cast_slice_mut(&mut out);
        dst.par_chunks_mut(BLOCK)
            .zip(src.par_chunks(BLOCK))
            .for_each(|(o, s)| {
                lanes::map_f16(op, s, o);
            });
        return out;
    }
    if T::DTYPE == DType::F32 {
        let src: &[f32] = bytemuck::cast_slice(x);
        let dst: &mut [f32] = bytemuck::cast_slice_mut(&mut out);
        dst.par_chunks_mut(BLOCK)
            .zip(src.par_chunks(BLOCK))
            .for_each(|(o, s)| f(s, o));
        return out;
    }
    out.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .for_each(|(o, xs)| {
            // two 1 KiB blocks stay in L1 beside the data streaming through (two of
            // BLOCK, zeroed per task, spilled to L2: f16 ReLU ran at 7 GB/s that way)
            let (mut a, mut b) = ([0f32; SUB_BLOCK], [0f32; SUB_BLOCK]);
            for (oc, xc) in o.chunks_mut(SUB_BLOCK).zip(xs.chunks(SUB_BLOCK)) {
                let (a, b) = (&mut a[..xc.len()], &mut b[..xc.len()]);
                widen(xc, a);
                f(a, b);
                narrow(b, oc);
            }
        });
    out
}

/// Elements per widened block of 16-bit data in [`map_blocks`] (and the elementwise
/// twins): small enough that a few stay in L1 beside the streaming data.
pub(crate) const SUB_BLOCK: usize = 256;

/// `o = f(x, y)` for two inputs of any float dtype: [`SUB_BLOCK`]s of each widened into
/// two f32 buffers in L1, `f` leaving its result in the first, which is narrowed into
/// `o` (the same-shape elementwise ops and SwiGLU without lane forms).
pub(crate) fn map_pair_blocks<T: Element>(
    o: &mut [T],
    xs: &[T],
    ys: &[T],
    f: impl Fn(&mut [f32], &[f32]),
) {
    let (mut p, mut q) = ([0f32; SUB_BLOCK], [0f32; SUB_BLOCK]);
    for ((oc, xc), yc) in o
        .chunks_mut(SUB_BLOCK)
        .zip(xs.chunks(SUB_BLOCK))
        .zip(ys.chunks(SUB_BLOCK))
    {
        let (p, q) = (&mut p[..xc.len()], &mut q[..xc.len()]);
        widen(xc, p);
        widen(yc, q);
        f(p, q);
        narrow(p, oc);
    }
}

/// The table slot of the 16-bit ops that go through [`table16`] (transcendental, no
/// parameters).
fn table_slot(op: UnaryOp) -> Option<Slot> {
    match op {
        UnaryOp::Exp => Some(Slot::Exp),
        UnaryOp::Log => Some(Slot::Log),
        UnaryOp::Rsqrt => Some(Slot::Rsqrt),
        UnaryOp::Tanh => Some(Slot::Tanh),
        UnaryOp::Sigmoid => Some(Slot::Sigmoid),
        _ => None,
    }
}

/// The op on `x`: a table lookup for the tabled 16-bit ops ([`table16`]), else computed.
pub(crate) fn run<T: Element + Pooled>(op: UnaryOp, x: &[T]) -> Vec<T> {
    if let Some(t) = table_slot(op).and_then(|s| table16::table::<T>(s, |all| computed(op, all))) {
        return table16::lookup(x, t);
    }
    computed(op, x)
}

/// The op computed per element (f32 formula; 16-bit data widened and narrowed).
pub(crate) fn computed<T: Element + Pooled>(op: UnaryOp, x: &[T]) -> Vec<T> {
    if let Some(lane) = LaneOp::of_unary(op).filter(|_| lanes::available()) {
        return map_lanes_or_blocks(x, Some(lane), |s, d| {
            lanes::map_into(lane, s, d);
        });
    }
    match op {
        UnaryOp::Exp => map_blocks(x, |s, d| each_into(s, d, exp_ieee)),
        UnaryOp::Log => map_blocks(x, |s, d| each_into(s, d, f32::ln)),
        UnaryOp::Sqrt => map_blocks(x, |s, d| each_into(s, d, f32::sqrt)),
        UnaryOp::Rsqrt => map_blocks(x, |s, d| each_into(s, d, |v| 1.0 / v.sqrt())),
        UnaryOp::Neg => map_blocks(x, |s, d| each_into(s, d, |v| -v)),
        UnaryOp::Abs => map_blocks(x, |s, d| each_into(s, d, f32::abs)),
        UnaryOp::Tanh => map_blocks(x, |s, d| each_into(s, d, f32::tanh)),
        UnaryOp::Sigmoid => map_blocks(x, |s, d| each_into(s, d, |v| 1.0 / (1.0 + exp_ieee(-v)))),
        // NaN passes through (PyTorch's clamp): compare, don't use f32::max
        UnaryOp::Clamp { min, max } => map_blocks(x, |s, d| {
            each_into(s, d, |v| {
                let v = if v < min { min } else { v };
                if v > max {
                    max
                } else {
                    v
                }
            })
        }),
        UnaryOp::AdditiveMask => map_blocks(x, |s, d| {
            each_into(s, d, |v| if v != 0.0 { 0.0 } else { f32::NEG_INFINITY })
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
