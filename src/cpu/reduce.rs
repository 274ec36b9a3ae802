//! CPU twin of `shaders/reduce.wgsl`: rows in parallel, eight-lane sums, and the same
//! NaN-is-largest, first-index-wins rule for max and argmax.

use super::CpuStorage;
use crate::ops::reduce::Reduction;
use rayon::prelude::*;

fn lanes_sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// (index, value) of the first maximum, NaN counting as largest.
fn argmax(v: &[f32]) -> (usize, f32) {
    if let Some(i) = v.iter().position(|x| x.is_nan()) {
        return (i, f32::NAN);
    }
    let mut best = (0, v[0]);
    for (i, &x) in v.iter().enumerate().skip(1) {
        if x > best.1 {
            best = (i, x);
        }
    }
    best
}

pub(crate) fn reduce(op: Reduction, x: &CpuStorage, n: usize) -> CpuStorage {
    let v = x.to_f32();
    let rows: Vec<f32> = match op {
        Reduction::ArgMax => {
            let idx: Vec<u32> = v.par_chunks(n).map(|r| argmax(r).0 as u32).collect();
            return CpuStorage::U32(idx);
        }
        Reduction::Max => v.par_chunks(n).map(|r| argmax(r).1).collect(),
        Reduction::Sum => v.par_chunks(n).map(lanes_sum).collect(),
        Reduction::Mean => v.par_chunks(n).map(|r| lanes_sum(r) / n as f32).collect(),
    };
    CpuStorage::from_f32(x.dtype(), rows)
}
