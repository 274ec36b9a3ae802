//! CPU twin of `shaders/norm.wgsl`: rows in parallel; each row is widened (and summed
//! with the residual) into an f32 buffer that stays in cache, reduced with eight lanes so
//! the loops vectorise, and written once. 16-bit weights (and biases) are widened once
//! per task of rows, in parallel with F16C where the CPU has it, into a buffer of the
//! task's (f32 ones are read in place); the call itself converts nothing.

use super::math::{lanes_sum, narrow, rows_per_task, widen};
use super::{take, CpuStorage, Pooled};
use crate::dtype::Element;
use crate::tensor::CpuSlice;
use half::{bf16, f16};
use rayon::prelude::*;
use std::borrow::Cow;

type Pair = (CpuStorage, Option<CpuStorage>);
/// One task's rows: (y, h, x, residual).
type Task<'a, T> = (&'a mut [T], Option<&'a mut [T]>, &'a [T], Option<&'a [T]>);

pub(crate) fn norm(
    x: CpuSlice<'_>,
    res: Option<CpuSlice<'_>>,
    w: CpuSlice<'_>,
    b: Option<CpuSlice<'_>>,
    eps: f32,
    n: usize,
    write_sum: bool,
) -> Pair {
    macro_rules! go {
        ($v:expr, $variant:ident, $t:ty) => {{
            let r = res.map(|r| r.as_slice::<$t>());
            let (y, h) = run::<$t>($v, r, w, b, eps, n, write_sum);
            (CpuStorage::$variant(y), h.map(CpuStorage::$variant))
        }};
    }
    match x {
        CpuSlice::F32(v) => go!(v, F32, f32),
        CpuSlice::F16(v) => go!(v, F16, f16),
        CpuSlice::BF16(v) => go!(v, BF16, bf16),
        CpuSlice::U32(_) => unreachable!("norms refuse u32 before dispatch"),
    }
}

fn run<T: Element + Pooled>(
    x: &[T],
    res: Option<&[T]>,
    w: CpuSlice<'_>,
    b: Option<CpuSlice<'_>>,
    eps: f32,
    n: usize,
    write_sum: bool,
) -> (Vec<T>, Option<Vec<T>>) {
    let mut y = take::<T>(x.len());
    let mut h = res.filter(|_| write_sum).map(|_| take::<T>(x.len()));
    let per = rows_per_task(n) * n;
    let body = |t: Task<'_, T>| norm_task_avx2(t, w, b, eps, n);
    match (h.as_mut(), res) {
        (Some(h), Some(r)) => y
            .par_chunks_mut(per)
            .zip(h.par_chunks_mut(per))
            .zip(x.par_chunks(per).zip(r.par_chunks(per)))
            .for_each(|((ys, hs), (xs, rs))| body((ys, Some(hs), xs, Some(rs)))),
        (None, Some(r)) => y
            .par_chunks_mut(per)
            .zip(x.par_chunks(per).zip(r.par_chunks(per)))
            .for_each(|(ys, (xs, rs))| body((ys, None, xs, Some(rs)))),
        _ => y
            .par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(ys, xs)| body((ys, None, xs, None))),
    }
    (y, h)
}

/// [`norm_task`] compiled for AVX2 + FMA where the CPU has them (8-wide loops).
fn norm_task_avx2<T: Element>(
    t: Task<'_, T>,
    w: CpuSlice<'_>,
    b: Option<CpuSlice<'_>>,
    eps: f32,
    n: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Element>(
            t: Task<'_, T>,
            w: CpuSlice<'_>,
            b: Option<CpuSlice<'_>>,
            eps: f32,
            n: usize,
        ) {
            norm_task(t, w, b, eps, n)
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were detected on this CPU just above.
            return unsafe { avx2(t, w, b, eps, n) };
        }
    }
    norm_task(t, w, b, eps, n)
}

/// One task's rows (see the module docs).
#[inline(always)]
fn norm_task<T: Element>(
    (ys, hs, xs, rs): Task<'_, T>,
    w: CpuSlice<'_>,
    b: Option<CpuSlice<'_>>,
    eps: f32,
    n: usize,
) {
    let w = widened(w);
    let b = b.map(widened);
    let b = b.as_deref();
    let inv_n = 1.0 / n as f32;
    let mut buf = vec![0f32; n];
    let mut tmp = vec![0f32; if rs.is_some() { n } else { 0 }];
    let mut hs = hs;
    for r in 0..xs.len() / n {
        let span = r * n..(r + 1) * n;
        match rs {
            Some(rs) => {
                widen(&xs[span.clone()], &mut buf);
                widen(&rs[span.clone()], &mut tmp);
                for (o, &c) in buf.iter_mut().zip(&tmp) {
                    *o += c;
                }
                if let Some(hs) = hs.as_deref_mut() {
                    narrow(&buf, &mut hs[span.clone()]);
                }
            }
            None => widen(&xs[span.clone()], &mut buf),
        }
        let yr = &mut ys[span];
        match b {
            Some(b) => {
                let mean = lanes_sum(&buf, |v| v) * inv_n;
                let var_sum = lanes_sum(&buf, |v| (v - mean) * (v - mean));
                let rstd = inv_scale(var_sum, inv_n, eps);
                for ((v, &wj), &bj) in buf.iter_mut().zip(w.iter()).zip(b) {
                    *v = (*v - mean) * rstd * wj + bj;
                }
                narrow(&buf, yr);
            }
            None => {
                let rstd = inv_scale(lanes_sum(&buf, |v| v * v), inv_n, eps);
                for (v, &wj) in buf.iter_mut().zip(w.iter()) {
                    *v = *v * rstd * wj;
                }
                narrow(&buf, yr);
            }
        }
    }
}

/// A weight or bias in f32 for one task: borrowed when it is f32, else widened once into
/// a buffer of the task's with [`widen`] (F16C where the CPU has it).
fn widened(s: CpuSlice<'_>) -> Cow<'_, [f32]> {
    fn wide<T: Element>(v: &[T]) -> Cow<'static, [f32]> {
        let mut out = vec![0f32; v.len()];
        widen(v, &mut out);
        Cow::Owned(out)
    }
    match s {
        CpuSlice::F32(v) => Cow::Borrowed(v),
        CpuSlice::F16(v) => wide(v),
        CpuSlice::BF16(v) => wide(v),
        CpuSlice::U32(_) => unreachable!("norms refuse u32 weights before dispatch"),
    }
}

/// `1 / sqrt(sum_sq / n + eps)`, or NaN when the row's sum of squares is not finite (the
/// row held NaN or ±∞): the whole row then comes out NaN, as on the GPU.
fn inv_scale(sum_sq: f32, inv_n: f32, eps: f32) -> f32 {
    if sum_sq.is_finite() {
        1.0 / (sum_sq * inv_n + eps).sqrt()
    } else {
        f32::NAN
    }
}

/// `y = x / max(‖x‖₂, eps)` per row of `n`, the norm in f32.
pub(crate) fn l2_normalize(x: CpuSlice<'_>, eps: f32, n: usize) -> CpuStorage {
    fn go<T: Element + Pooled>(x: &[T], eps: f32, n: usize) -> Vec<T> {
        let mut y = take::<T>(x.len());
        let per = rows_per_task(n) * n;
        y.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(ys, xs)| l2_task_avx2(ys, xs, eps, n));
        y
    }
    match x {
        CpuSlice::F32(v) => CpuStorage::F32(go(v, eps, n)),
        CpuSlice::F16(v) => CpuStorage::F16(go(v, eps, n)),
        CpuSlice::BF16(v) => CpuStorage::BF16(go(v, eps, n)),
        CpuSlice::U32(_) => unreachable!("l2_normalize refuses u32 before dispatch"),
    }
}

/// [`l2_task`] compiled for AVX2 + FMA where the CPU has them (8-wide loops).
fn l2_task_avx2<T: Element>(ys: &mut [T], xs: &[T], eps: f32, n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Element>(ys: &mut [T], xs: &[T], eps: f32, n: usize) {
            l2_task(ys, xs, eps, n)
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were detected on this CPU just above.
            return unsafe { avx2(ys, xs, eps, n) };
        }
    }
    l2_task(ys, xs, eps, n)
}

/// One task's rows of [`l2_normalize`].
#[inline(always)]
fn l2_task<T: Element>(ys: &mut [T], xs: &[T], eps: f32, n: usize) {
    let mut buf = vec![0f32; n];
    for (yr, xr) in ys.chunks_mut(n).zip(xs.chunks(n)) {
        widen(xr, &mut buf);
        let sum_sq = lanes_sum(&buf, |v| v * v);
        // a non-finite sum makes the whole row NaN, as in the norms
        let inv = if sum_sq.is_finite() {
            1.0 / sum_sq.sqrt().max(eps)
        } else {
            f32::NAN
        };
        for v in buf.iter_mut() {
            *v *= inv;
        }
        narrow(&buf, yr);
    }
}
