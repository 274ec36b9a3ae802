//! CPU twin of `shaders/embedding.wgsl` (ids already checked against the vocabulary).

use super::{take, CpuStorage, Pooled};
use crate::dtype::Element;
use crate::tensor::CpuSlice;
use rayon::prelude::*;

pub(crate) fn embedding(ids: &[u32], table: CpuSlice<'_>, d: usize) -> CpuStorage {
    fn gather<T: Element + Pooled>(ids: &[u32], table: &[T], d: usize) -> Vec<T> {
        let mut out = take::<T>(ids.len() * d);
        if d > 0 {
            out.par_chunks_mut(d)
                .zip(ids.par_iter())
                .for_each(|(o, &id)| {
                    let start = id as usize * d;
                    o.copy_from_slice(&table[start..start + d]);
                });
        }
        out
    }
    match table {
        CpuSlice::F32(t) => CpuStorage::F32(gather(ids, t, d)),
        CpuSlice::F16(t) => CpuStorage::F16(gather(ids, t, d)),
        CpuSlice::BF16(t) => CpuStorage::BF16(gather(ids, t, d)),
        CpuSlice::U32(t) => CpuStorage::U32(gather(ids, t, d)),
    }
}
