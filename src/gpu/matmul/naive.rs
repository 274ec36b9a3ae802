//! The naive matmul (`shaders/matmul_naive.wgsl`): one output per invocation, the
//! baseline the speed-up ratios are measured against.

use super::{bias_binding, epilogue_constants, MatmulParams, AB_BIAS_C};
use crate::error::Result;
use crate::gpu::shader::{kernel_file, pieces, KernelSource, ShaderHeader};
use crate::gpu::{fold_groups, GpuContext};
use crate::ops::matmul::MatmulPlan;
use crate::tensor::Tensor;

/// One output per invocation, no tiling: the baseline of the speed-up ratio.
pub(crate) static MATMUL_NAIVE: KernelSource = KernelSource {
    name: "matmul_naive",
    source: kernel_file!("matmul_naive"),
    entry_points: &["main"],
    tensors: AB_BIAS_C,
    mixed_dtypes: true,
    enables: &[],
    specialisations: &[&[], &[("HAS_BIAS", 1.0), ("ACT", 1.0)]],
    pieces: &[
        &pieces::MATMUL_PARAMS,
        &pieces::ACTIVATION,
        &pieces::MATMUL_BATCH_OFFSETS,
    ],
    swaps: &[],
    params: Some(&MatmulParams::LAYOUT),
};

pub(super) fn naive(
    g: &GpuContext,
    plan: &MatmulPlan,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    let (bias_buf, bias_dt) = bias_binding(bias, a);
    let pipeline = g.pipeline(
        &MATMUL_NAIVE,
        "main",
        ShaderHeader::new(vec![plan.in_dtype, plan.in_dtype, bias_dt, plan.out_dtype]),
        &epilogue_constants(bias, plan.activation),
    )?;
    let params = MatmulParams::new(plan);
    let total = (plan.batch() * plan.m * plan.n) as u32;
    g.dispatch(
        &pipeline,
        "matmul naive",
        &[a.gpu_buffer(), b.gpu_buffer(), bias_buf, out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(total.div_ceil(256)),
    )
}
