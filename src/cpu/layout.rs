//! CPU twins of `shaders/layout.wgsl`: bitwise copies, parallel over output blocks.

use super::{take, CpuStorage, Pooled, PARALLEL_MIN};
use crate::dtype::DType;
use crate::dtype::Element;
use crate::tensor::CpuSlice;
use rayon::prelude::*;

fn permute_typed<T: Element + Pooled>(x: &[T], shape: &[usize], src_strides: &[usize]) -> Vec<T> {
    let r = shape.len();
    let inner = shape[r - 1];
    let inner_stride = src_strides[r - 1];
    let n: usize = shape.iter().product();
    let mut out = take::<T>(n);
    if n == 0 {
        return out;
    }
    // rows of the output's last dimension, each gathered with one stride
    out.par_chunks_mut(inner)
        .with_min_len((PARALLEL_MIN / inner).max(1))
        .enumerate()
        .for_each(|(row, dst)| {
            let mut rem = row;
            let mut base = 0;
            for d in (0..r - 1).rev() {
                base += (rem % shape[d]) * src_strides[d];
                rem /= shape[d];
            }
            if inner_stride == 1 {
                dst.copy_from_slice(&x[base..base + inner]);
            } else {
                for (j, o) in dst.iter_mut().enumerate() {
                    *o = x[base + j * inner_stride];
                }
            }
        });
    out
}

pub(crate) fn permute(x: CpuSlice<'_>, shape: &[usize], src_strides: &[usize]) -> CpuStorage {
    match x {
        CpuSlice::F32(v) => CpuStorage::F32(permute_typed(v, shape, src_strides)),
        CpuSlice::F16(v) => CpuStorage::F16(permute_typed(v, shape, src_strides)),
        CpuSlice::BF16(v) => CpuStorage::BF16(permute_typed(v, shape, src_strides)),
        CpuSlice::U32(v) => CpuStorage::U32(permute_typed(v, shape, src_strides)),
    }
}

fn concat_typed<T: Element + Pooled>(parts: &[(&[T], usize)], dst_block: usize) -> Vec<T> {
    let outer = parts
        .iter()
        .find(|(_, b)| *b > 0)
        .map_or(0, |(v, b)| v.len() / b);
    let mut out = take::<T>(outer * dst_block);
    if dst_block == 0 {
        return out;
    }
    out.par_chunks_mut(dst_block)
        .enumerate()
        .for_each(|(o, dst)| {
            let mut off = 0;
            for (src, b) in parts {
                dst[off..off + b].copy_from_slice(&src[o * b..(o + 1) * b]);
                off += b;
            }
        });
    out
}

pub(crate) fn concat(
    parts: &[(CpuSlice<'_>, usize)],
    dst_block: usize,
    dtype: DType,
) -> CpuStorage {
    macro_rules! go {
        ($variant:ident, $t:ty) => {{
            let typed: Vec<(&[$t], usize)> = parts
                .iter()
                .map(|(s, b)| (s.as_slice::<$t>(), *b))
                .collect();
            CpuStorage::$variant(concat_typed(&typed, dst_block))
        }};
    }
    match dtype {
        DType::F32 => go!(F32, f32),
        DType::F16 => go!(F16, half::f16),
        DType::BF16 => go!(BF16, half::bf16),
        DType::U32 => go!(U32, u32),
    }
}
