//! CPU twin of `shaders/reduce.wgsl`: rows in parallel (16-bit rows widened into a
//! cached f32 buffer), eight-lane sums and maxima, and the same NaN-is-largest,
//! first-index-wins rule for max and argmax.

use super::math::{lanes_sum, rows_per_task, widen};
use super::CpuStorage;
use crate::dtype::Element;
use crate::ops::reduce::Reduction;
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

fn one(op: Reduction, r: &[f32]) -> (f32, u32) {
    match op {
        Reduction::Sum => (lanes_sum(r, |v| v), 0),
        Reduction::Mean => (lanes_sum(r, |v| v) / r.len() as f32, 0),
        Reduction::Max => (argmax(r).1, 0),
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

pub(crate) fn reduce(op: Reduction, x: &CpuStorage, n: usize) -> CpuStorage {
    let rows = match x {
        CpuStorage::F32(v) => run(op, v, n),
        CpuStorage::F16(v) => run(op, v, n),
        CpuStorage::BF16(v) => run(op, v, n),
        CpuStorage::U32(_) => unreachable!("reductions refuse u32 before dispatch"),
    };
    if op == Reduction::ArgMax {
        return CpuStorage::U32(rows.into_iter().map(|(_, i)| i).collect());
    }
    CpuStorage::from_f32(x.dtype(), rows.into_iter().map(|(v, _)| v).collect())
}
