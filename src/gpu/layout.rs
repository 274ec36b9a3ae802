//! Launcher for `shaders/layout.wgsl`.

use super::shader::{kernel_file, uniform_params, KernelSource, ShaderHeader, TensorBinding};
use super::{fold_groups, GpuContext};
use crate::error::Result;
use crate::shape::{pad_rank, MAX_RANK};
use crate::tensor::Tensor;

pub(crate) static LAYOUT: KernelSource = KernelSource {
    name: "layout",
    source: kernel_file!("layout"),
    entry_points: &["permute", "concat"],
    tensors: &[TensorBinding::read("x"), TensorBinding::write("y")],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[&[]],
    pieces: &[],
    swaps: &[],
    params: Some(&LayoutParams::LAYOUT),
};

const WORKGROUP: u32 = 256;

uniform_params! {
    /// Mirrors `Params` in layout.wgsl.
    pub(crate) struct LayoutParams {
        n: u32,
        rank: u32,
        src_block: u32,
        dst_block: u32,
        dst_offset: u32,
        _pad: [u32; 3],
        out_shape: [u32; MAX_RANK],
        src_strides: [u32; MAX_RANK],
    }
}

pub(crate) fn permute(
    g: &GpuContext,
    x: &Tensor,
    shape: &[usize],
    src_strides: &[usize],
    out: &Tensor,
) -> Result<()> {
    let n = out.len() as u32;
    let params = LayoutParams {
        n,
        rank: shape.len() as u32,
        out_shape: pad_rank(shape),
        src_strides: pad_rank(src_strides),
        ..bytemuck::Zeroable::zeroed()
    };
    let pipeline = g.pipeline(
        &LAYOUT,
        "permute",
        ShaderHeader::new(vec![x.dtype(); 2]),
        &[],
    )?;
    g.dispatch(
        &pipeline,
        "permute",
        &[x.gpu_buffer(), out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(n.div_ceil(2 * WORKGROUP)),
    )
}

/// Copies `x`, viewed as `[outer, src_block]`, into `out` viewed as
/// `[outer, dst_block]` at column `dst_offset`.
pub(crate) fn concat_part(
    g: &GpuContext,
    x: &Tensor,
    src_block: usize,
    dst_block: usize,
    dst_offset: usize,
    out: &Tensor,
) -> Result<()> {
    let n = x.len() as u32;
    let params = LayoutParams {
        n,
        src_block: src_block as u32,
        dst_block: dst_block as u32,
        dst_offset: dst_offset as u32,
        ..bytemuck::Zeroable::zeroed()
    };
    let pipeline = g.pipeline(
        &LAYOUT,
        "concat",
        ShaderHeader::new(vec![x.dtype(); 2]),
        &[],
    )?;
    g.dispatch(
        &pipeline,
        "concat",
        &[x.gpu_buffer(), out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(n.div_ceil(2 * WORKGROUP)),
    )
}
