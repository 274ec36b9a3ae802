//! CPU twin of `shaders/reduce.wgsl`: rows in parallel (16-bit rows widened into a
//! cached f32 buffer), eight-lane sums and maxima, and the same NaN-is-largest,
//! first-index-wins rule for max and argmax. Reductions over an inner dimension walk
//! the reduced axis with whole contiguous inner rows as the vector lanes.

use super::math::{lanes_sum, rows_per_task, widen};
use super::CpuStorage;
use crate::dtype::Element;
use crate::ops::reduce::Reduction;
use crate::tensor::CpuSlice;
use rayon::prelude::*;

/// (max ignoring NaN, whether there is a NaN), eight lanes so it vectorises.
fn lanes_max(v: &[f32]) -> (f32, bool) {
    let mut mx = [f32::NEG_INFINITY; 8];
    let mut nan = [false; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            mx[k] = if c[k] > mx[k] { c[k] } else { mx[k] };
            nan[k] |= c[k].is_nan();
        }
    }
    let mut m = mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut any = nan.iter().any(|&b| b);
    for &x in chunks.remainder() {
        m = if x > m { x } else { m };
        any |= x.is_nan();
    }
    (m, any)
}

/// (index, value) of the first maximum, NaN counting as largest (−0 ties +0).
fn argmax(v: &[f32]) -> (usize, f32) {
    let (m, nan) = lanes_max(v);
    if nan {
        return (v.iter().position(|x| x.is_nan()).unwrap_or(0), f32::NAN);
    }
    (v.iter().position(|&x| x == m).unwrap_or(0), m)
}

/// min ignoring NaN, and whether there is a NaN.
fn lanes_min(v: &[f32]) -> (f32, bool) {
    let mut mn = [f32::INFINITY; 8];
    let mut nan = [false; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            mn[k] = if c[k] < mn[k] { c[k] } else { mn[k] };
            nan[k] |= c[k].is_nan();
        }
    }
    let mut m = mn.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let mut any = nan.iter().any(|&b| b);
    for &x in chunks.remainder() {
        m = if x < m { x } else { m };
        any |= x.is_nan();
    }
    (m, any)
}

fn one(op: Reduction, r: &[f32]) -> (f32, u32) {
    match op {
        Reduction::Sum => (lanes_sum(r, |v| v), 0),
        Reduction::Mean => (lanes_sum(r, |v| v) / r.len() as f32, 0),
        Reduction::Max => (argmax(r).1, 0),
        Reduction::Min => {
            let (m, nan) = lanes_min(r);
            (if nan { f32::NAN } else { m }, 0)
        }
        Reduction::ArgMax => {
            let (i, m) = argmax(r);
            (m, i as u32)
        }
    }
}

fn run<T: Element>(op: Reduction, x: &[T], n: usize) -> Vec<(f32, u32)> {
    let per = rows_per_task(n) * n;
    x.par_chunks(per)
        .flat_map_iter(|xs| {
            let mut buf = vec![0f32; if T::DTYPE == crate::DType::F32 { 0 } else { n }];
            xs.chunks(n)
                .map(|r| {
                    if T::DTYPE == crate::DType::F32 {
                        one(op, bytemuck::cast_slice(r))
                    } else {
                        widen(r, &mut buf);
                        one(op, &buf)
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Reduces axis 1 of `x` viewed as `[outer, n, inner]` (inner > 1): per outer block,
/// the n rows of `inner` values fold into f32 accumulators one row at a time.
fn run_strided<T: Element>(op: Reduction, x: &[T], n: usize, inner: usize) -> Vec<(f32, u32)> {
    x.par_chunks(n * inner)
        .flat_map_iter(|block| {
            let mut acc = vec![0f32; inner];
            let mut idx = vec![0u32; inner];
            let mut nan = vec![false; inner];
            let mut row = vec![0f32; inner];
            for k in 0..n {
                widen(&block[k * inner..(k + 1) * inner], &mut row);
                if k == 0 {
                    acc.copy_from_slice(&row);
                    for (f, &v) in nan.iter_mut().zip(&row) {
                        *f = v.is_nan();
                    }
                    continue;
                }
                match op {
                    Reduction::Sum | Reduction::Mean => {
                        for (a, &v) in acc.iter_mut().zip(&row) {
                            *a += v;
                        }
                    }
                    Reduction::Max | Reduction::ArgMax | Reduction::Min => {
                        let better = |v: f32, a: f32| {
                            if op == Reduction::Min {
                                v < a
                            } else {
                                v > a
                            }
                        };
                        for j in 0..inner {
                            let v = row[j];
                            // the first NaN wins and stays; otherwise strictly better
                            if !nan[j] && (v.is_nan() || better(v, acc[j])) {
                                acc[j] = v;
                                idx[j] = k as u32;
                                nan[j] = v.is_nan();
                            }
                        }
                    }
                }
            }
            if op == Reduction::Mean {
                for a in acc.iter_mut() {
                    *a /= n as f32;
                }
            }
            acc.into_iter().zip(idx).collect::<Vec<_>>()
        })
        .collect()
}

/// Reduces axis 1 of `x` viewed as `[outer, n, inner]`.
pub(crate) fn reduce(
    op: Reduction,
    x: CpuSlice<'_>,
    outer: usize,
    n: usize,
    inner: usize,
) -> CpuStorage {
    let rows = if outer * inner == 0 {
        Vec::new()
    } else if inner == 1 {
        match x {
            CpuSlice::F32(v) => run(op, v, n),
            CpuSlice::F16(v) => run(op, v, n),
            CpuSlice::BF16(v) => run(op, v, n),
            CpuSlice::U32(_) => unreachable!("reductions refuse u32 before dispatch"),
        }
    } else {
        match x {
            CpuSlice::F32(v) => run_strided(op, v, n, inner),
            CpuSlice::F16(v) => run_strided(op, v, n, inner),
            CpuSlice::BF16(v) => run_strided(op, v, n, inner),
            CpuSlice::U32(_) => unreachable!("reductions refuse u32 before dispatch"),
        }
    };
    if op == Reduction::ArgMax {
        return CpuStorage::U32(rows.into_iter().map(|(_, i)| i).collect());
    }
    CpuStorage::from_f32(x.dtype(), rows.into_iter().map(|(v, _)| v).collect())
}
