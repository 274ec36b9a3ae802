//! CPU twin of `shaders/cast.wgsl`.

use super::CpuStorage;
use crate::dtype::DType;

pub(crate) fn cast(src: &CpuStorage, to: DType) -> CpuStorage {
    CpuStorage::from_f32(to, src.to_f32().into_owned())
}
