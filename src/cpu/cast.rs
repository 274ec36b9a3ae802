//! CPU twin of `shaders/cast.wgsl`: blocks widened to f32 and narrowed to the target in
//! L1-sized pieces (half's slice conversions, F16C where the CPU has it).

use super::math::{narrow, widen};
use super::unary::BLOCK;
use super::{take, CpuStorage, Pooled};
use crate::dtype::{DType, Element};
use crate::tensor::CpuSlice;
use half::{bf16, f16};
use rayon::prelude::*;

fn convert<S: Element, D: Element + Pooled>(src: &[S]) -> Vec<D> {
    let mut out = take::<D>(src.len());
    out.par_chunks_mut(BLOCK)
        .zip(src.par_chunks(BLOCK))
        .for_each(|(o, s)| {
            let mut buf = [0f32; BLOCK];
            let buf = &mut buf[..s.len()];
            widen(s, buf);
            narrow(buf, o);
        });
    out
}

fn to<D: Element + Pooled>(src: CpuSlice<'_>) -> Vec<D> {
    match src {
        CpuSlice::F32(v) => convert(v),
        CpuSlice::F16(v) => convert(v),
        CpuSlice::BF16(v) => convert(v),
        CpuSlice::U32(v) => convert(v),
    }
}

pub(crate) fn cast(src: CpuSlice<'_>, dtype: DType) -> CpuStorage {
    match dtype {
        DType::F32 => CpuStorage::F32(to::<f32>(src)),
        DType::F16 => CpuStorage::F16(to::<f16>(src)),
        DType::BF16 => CpuStorage::BF16(to::<bf16>(src)),
        DType::U32 => CpuStorage::U32(to::<u32>(src)),
    }
}
