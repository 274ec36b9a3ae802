//! Launcher for `shaders/cast.wgsl`.

use super::shader::{kernel_file, uniform_params, KernelSource, ShaderHeader, TensorBinding};
use super::{fold_groups, GpuContext};
use crate::error::Result;
use crate::tensor::Tensor;

uniform_params! {
    /// Mirrors `Params` in cast.wgsl.
    pub(crate) struct CastParams {
        n: u32,
        _pad: [u32; 3],
    }
}

pub(crate) static CAST: KernelSource = KernelSource {
    name: "cast",
    source: kernel_file!("cast"),
    entry_points: &["main"],
    tensors: &[TensorBinding::read("src"), TensorBinding::write("dst")],
    mixed_dtypes: true,
    enables: &[],
    specialisations: &[&[]],
    pieces: &[],
    swaps: &[],
    params: Some(&CastParams::LAYOUT),
};

const WORKGROUP: u32 = 256;

pub(crate) fn cast(g: &GpuContext, src: &Tensor, dst: &Tensor) -> Result<()> {
    let n = src.len() as u32;
    let pipeline = g.pipeline(
        &CAST,
        "main",
        ShaderHeader::new(vec![src.dtype(), dst.dtype()]),
        &[],
    )?;
    g.dispatch(
        &pipeline,
        "cast",
        &[src.gpu_buffer(), dst.gpu_buffer()],
        Some(bytemuck::bytes_of(&CastParams { n, _pad: [0; 3] })),
        fold_groups(n.div_ceil(2 * WORKGROUP)),
    )
}
