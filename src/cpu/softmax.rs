//! CPU twin of `shaders/softmax.wgsl`: rows in parallel, each in three passes over a
//! buffer that stays in cache (logits + max, exp + sum, scale), so memory sees one read
//! of x and one write of y.

use super::math::{exp_in_place, lanes_sum, map_exp, narrow, rows_per_task, widen};
use super::{take, CpuStorage, Pooled};
use crate::dtype::Element;
use crate::ops::softmax::Plan;
use crate::tensor::CpuSlice;
use half::{bf16, f16};
use rayon::prelude::*;

pub(crate) fn softmax(x: CpuSlice<'_>, plan: &Plan) -> CpuStorage {
    let mask = plan.mask.as_ref().map(|m| m.cpu_storage().to_f32());
    let mask = mask.as_deref();
    match x {
        CpuSlice::F32(v) => CpuStorage::F32(run(v, plan, mask)),
        CpuSlice::F16(v) => CpuStorage::F16(run::<f16>(v, plan, mask)),
        CpuSlice::BF16(v) => CpuStorage::BF16(run::<bf16>(v, plan, mask)),
        CpuSlice::U32(_) => unreachable!("softmax refuses u32 before dispatch"),
    }
}

fn run<T: Element + Pooled>(x: &[T], plan: &Plan, mask: Option<&[f32]>) -> Vec<T> {
    let n = plan.n;
    let mut out = take::<T>(x.len());
    if n == 0 {
        return out;
    }
    let per = rows_per_task(n);
    let f32_out = T::DTYPE == crate::DType::F32;
    out.par_chunks_mut(n * per)
        .zip(x.par_chunks(n * per))
        .enumerate()
        .for_each(|(task, (ys, xs))| {
            let mut scratch = if f32_out { Vec::new() } else { vec![0f32; n] };
            let mut exps = Vec::new();
            for (r, (y, xr)) in ys.chunks_mut(n).zip(xs.chunks(n)).enumerate() {
                let row = task * per + r;
                if f32_out {
                    let buf: &mut [f32] = bytemuck::cast_slice_mut(y);
                    logits(buf, xr, plan, mask, row);
                    row_softmax(buf, plan.log, &mut exps);
                } else {
                    logits(&mut scratch, xr, plan, mask, row);
                    row_softmax(&mut scratch, plan.log, &mut exps);
                    narrow(&scratch, y);
                }
            }
        });
    out
}

fn logits<T: Element>(buf: &mut [f32], x: &[T], plan: &Plan, mask: Option<&[f32]>, row: usize) {
    let s = plan.scale;
    widen(x, buf);
    if s != 1.0 {
        for b in buf.iter_mut() {
            *b *= s;
        }
    }
    if let Some(m) = mask {
        let off = plan.mask_offset(row);
        for (b, &v) in buf.iter_mut().zip(&m[off..off + plan.n]) {
            *b += v;
        }
    }
    if plan.causal {
        let first_hidden = (plan.col_limit(row) + 1).clamp(0, plan.n as i64) as usize;
        buf[first_hidden..].fill(f32::NEG_INFINITY);
    }
}

/// Softmax (or log-softmax) of one row of logits, in place (`scratch`: n floats for the
/// log form). Special rows as documented in `ops::softmax`.
pub(crate) fn row_softmax(y: &mut [f32], log: bool, scratch: &mut Vec<f32>) {
    // Pass 1: max and NaN screen, eight lanes so the loop vectorises.
    let mut mx = [f32::NEG_INFINITY; 8];
    let mut nan = [false; 8];
    let mut chunks = y.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            mx[k] = if c[k] > mx[k] { c[k] } else { mx[k] };
            nan[k] |= c[k].is_nan();
        }
    }
    let mut m = mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut any_nan = nan.iter().any(|&b| b);
    for &v in chunks.remainder() {
        m = if v > m { v } else { m };
        any_nan |= v.is_nan();
    }
    if any_nan || m == f32::INFINITY {
        y.fill(f32::NAN);
        return;
    }
    if m == f32::NEG_INFINITY {
        y.fill(if log { f32::NEG_INFINITY } else { 0.0 });
        return;
    }
    if log {
        // Pass 2: Σ exp(l − m) through the scratch row; pass 3: (l − m) − ln Σ, with
        // (l − m) first: exact near the max, where m + ln Σ would round at m's scale.
        scratch.resize(y.len(), 0.0);
        map_exp(y, scratch, m);
        let ls = lanes_sum(scratch, |v| v).ln();
        for v in y.iter_mut() {
            *v = (*v - m) - ls;
        }
    } else {
        // Pass 2: exponentials in place; pass 3: their sum; pass 4: scale. The row stays
        // in L1/L2, so these cost no memory traffic.
        exp_in_place(y, m);
        let inv = 1.0 / lanes_sum(y, |v| v);
        for v in y.iter_mut() {
            *v *= inv;
        }
    }
}
