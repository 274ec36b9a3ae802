//! CPU twin of `shaders/rope.wgsl`: rows in parallel, rotated by the call's cos/sin table
//! (see `ops::rope::angle_table`).

use super::math::{narrow, rows_per_task, widen};
use super::{take, CpuStorage, Pooled};
use crate::dtype::Element;
use crate::ops::rope::Plan;
use crate::tensor::CpuSlice;
use rayon::prelude::*;

pub(crate) fn rope(x: CpuSlice<'_>, plan: &Plan) -> CpuStorage {
    match x {
        CpuSlice::F32(v) => CpuStorage::F32(run(v, plan)),
        CpuSlice::F16(v) => CpuStorage::F16(run(v, plan)),
        CpuSlice::BF16(v) => CpuStorage::BF16(run(v, plan)),
        CpuSlice::U32(_) => unreachable!("rope refuses u32 before dispatch"),
    }
}

fn run<T: Element + Pooled>(x: &[T], plan: &Plan) -> Vec<T> {
    let d = plan.d;
    let mut out = take::<T>(x.len());
    let per = rows_per_task(d) * d;
    out.par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .enumerate()
        .for_each(|(task, (ys, xs))| rope_task_avx2(task * (per / d), ys, xs, plan));
    out
}

/// [`rope_task`] compiled for AVX2 + FMA where the CPU has them.
fn rope_task_avx2<T: Element>(first: usize, ys: &mut [T], xs: &[T], plan: &Plan) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Element>(first: usize, ys: &mut [T], xs: &[T], plan: &Plan) {
            rope_task(first, ys, xs, plan)
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were detected on this CPU just above.
            return unsafe { avx2(first, ys, xs, plan) };
        }
    }
    rope_task(first, ys, xs, plan)
}

/// Rows `first..` of the output (one task).
#[inline(always)]
fn rope_task<T: Element>(first: usize, ys: &mut [T], xs: &[T], plan: &Plan) {
    let (d, h) = (plan.d, plan.rot / 2);
    let table = &plan.table;
    // rows widened into f32 buffers (16-bit through F16C), rotated, and narrowed once
    let (mut src, mut dst) = (vec![0f32; d], vec![0f32; d]);
    for (r, (y, xr)) in ys.chunks_mut(d).zip(xs.chunks(d)).enumerate() {
        let row = first + r;
        let cs = &table[(plan.position(row) - plan.offset) * h..][..h];
        widen(xr, &mut src);
        if plan.halves {
            let (u, v) = src[..2 * h].split_at(h);
            let (du, dv) = dst[..2 * h].split_at_mut(h);
            for i in 0..h {
                let [c, s] = cs[i];
                du[i] = u[i] * c - v[i] * s;
                dv[i] = v[i] * c + u[i] * s;
            }
        } else {
            for (i, &[c, s]) in cs.iter().enumerate() {
                let (u, v) = (src[2 * i], src[2 * i + 1]);
                dst[2 * i] = u * c - v * s;
                dst[2 * i + 1] = v * c + u * s;
            }
        }
        narrow(&dst[..plan.rot], &mut y[..plan.rot]);
        y[plan.rot..].copy_from_slice(&xr[plan.rot..]);
    }
}
