//! Launcher for `shaders/unary.wgsl`.

use super::shader::{kernel_file, uniform_params, KernelSource, ShaderHeader, TensorBinding};
use super::{fold_groups, GpuContext};
use crate::error::Result;
use crate::tensor::Tensor;

pub(crate) static UNARY: KernelSource = KernelSource {
    name: "unary",
    source: kernel_file!("unary"),
    entry_points: &["main"],
    tensors: &[TensorBinding::read("x"), TensorBinding::write("y")],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[
        &[("OP", 0.0)],
        &[("OP", 1.0)],
        &[("OP", 2.0)],
        &[("OP", 3.0)],
        &[("OP", 4.0)],
        &[("OP", 5.0)],
        &[("OP", 6.0)],
        &[("OP", 7.0)],
        &[("OP", 8.0)],
        &[("OP", 9.0)],
    ],
    pieces: &[],
    swaps: &[],
    params: Some(&UnaryParams::LAYOUT),
};

const WORKGROUP: u32 = 256;

uniform_params! {
    /// Mirrors `Params` in unary.wgsl.
    pub(crate) struct UnaryParams {
        n: u32,
        lo: f32,
        hi: f32,
        _pad0: u32,
    }
}

/// `y = op(x)` for the kernel's op code `code` (clamp bounds `lo`, `hi`).
pub(crate) fn unary(
    g: &GpuContext,
    code: u32,
    lo: f32,
    hi: f32,
    x: &Tensor,
    y: &Tensor,
) -> Result<()> {
    let n = y.len() as u32;
    let pipeline = g.pipeline(
        &UNARY,
        "main",
        ShaderHeader::new(vec![x.dtype(); 2]),
        &[("OP", code as f64)],
    )?;
    let params = UnaryParams {
        n,
        lo,
        hi,
        _pad0: 0,
    };
    g.dispatch(
        &pipeline,
        "unary",
        &[x.gpu_buffer(), y.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(n.div_ceil(2 * WORKGROUP)),
    )
}
