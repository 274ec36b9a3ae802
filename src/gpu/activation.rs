//! Launcher for `shaders/activation.wgsl`.

use super::shader::{
    kernel_file, pieces, uniform_params, KernelSource, ShaderHeader, TensorBinding,
};
use super::{fold_groups, GpuContext};
use crate::error::Result;
use crate::ops::activation::Activation;
use crate::tensor::Tensor;

uniform_params! {
    /// Mirrors `Params` in activation.wgsl.
    pub(crate) struct ActivationParams {
        n: u32,
        _pad: [u32; 3],
    }
}

pub(crate) static ACTIVATION: KernelSource = KernelSource {
    name: "activation",
    source: kernel_file!("activation"),
    entry_points: &["main"],
    tensors: &[
        TensorBinding::read("a"),
        TensorBinding::read("b"),
        TensorBinding::write("out"),
    ],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[
        &[("OP", 1.0)],
        &[("OP", 2.0)],
        &[("OP", 3.0)],
        &[("OP", 4.0)],
        &[("OP", 5.0)],
    ],
    pieces: &[&pieces::ACTIVATION],
    swaps: &[],
    params: Some(&ActivationParams::LAYOUT),
};

const WORKGROUP: u32 = 256;

/// `out = act(a)`, or `silu(a) · b` for SwiGLU (`b` then has a's shape).
pub(crate) fn activation(
    g: &GpuContext,
    act: Activation,
    a: &Tensor,
    b: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    let n = out.len() as u32;
    let pipeline = g.pipeline(
        &ACTIVATION,
        "main",
        ShaderHeader::new(vec![a.dtype(); 3]),
        &[("OP", f64::from(act.code()))],
    )?;
    g.dispatch(
        &pipeline,
        "activation",
        &[
            a.gpu_buffer(),
            b.unwrap_or(a).gpu_buffer(),
            out.gpu_buffer(),
        ],
        Some(bytemuck::bytes_of(&ActivationParams { n, _pad: [0; 3] })),
        fold_groups(n.div_ceil(2 * WORKGROUP)),
    )
}
