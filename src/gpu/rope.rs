//! Launcher for `shaders/rope.wgsl`.

use super::shader::{kernel_file, uniform_params, KernelSource, ShaderHeader, TensorBinding};
use super::{fold_groups, GpuContext};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::rope::Plan;
use crate::tensor::Tensor;

pub(crate) static ROPE: KernelSource = KernelSource {
    name: "rope",
    source: kernel_file!("rope"),
    entry_points: &["main"],
    tensors: &[
        TensorBinding::read("x"),
        TensorBinding::index_read("table"),
        TensorBinding::write("y"),
    ],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[&[]],
    pieces: &[],
    swaps: &[],
    params: Some(&RopeParams::LAYOUT),
};

const WORKGROUP: u32 = 256;

uniform_params! {
    /// Mirrors `Params` in rope.wgsl.
    pub(crate) struct RopeParams {
        n: u32,
        d: u32,
        rot: u32,
        halves: u32,
        div: u32,
        seq: u32,
        _pad: [u32; 2],
    }
}

pub(crate) fn rope(g: &GpuContext, x: &Tensor, plan: &Plan, out: &Tensor) -> Result<()> {
    let n = x.len() as u32;
    let params = RopeParams {
        n,
        d: plan.d as u32,
        rot: plan.rot as u32,
        halves: plan.halves as u32,
        div: plan.div as u32,
        seq: plan.seq as u32,
        _pad: [0; 2],
    };
    // the f32 (cos, sin) pairs travel as their bit patterns in a u32 buffer, which the
    // header leaves alone whatever x's dtype
    let words: &[u32] = bytemuck::cast_slice(plan.table.as_slice());
    let table = Tensor::from_slice(x.device(), words, &[words.len()])?;
    let pipeline = g.pipeline(
        &ROPE,
        "main",
        ShaderHeader::new(vec![x.dtype(), DType::U32, x.dtype()]),
        &[],
    )?;
    g.dispatch(
        &pipeline,
        "rope",
        &[x.gpu_buffer(), table.gpu_buffer(), out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(n.div_ceil(2 * WORKGROUP)),
    )
}
