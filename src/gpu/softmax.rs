//! Launcher for `shaders/softmax.wgsl`.

use super::rows::{row_workgroup, RowKernel};
use super::shader::{
    kernel_file, pieces, uniform_params, KernelSource, ShaderHeader, TensorBinding,
};
use super::{fold_groups, GpuContext};
use crate::error::Result;
use crate::ops::softmax::Plan;
use crate::shape::{pad_rank, MAX_RANK};
use crate::tensor::Tensor;

/// The file as written: shared-memory reductions.
const SOFTMAX_FILE: KernelSource = KernelSource {
    name: "softmax",
    source: kernel_file!("softmax"),
    entry_points: &["main", "short_rows"],
    tensors: &[
        TensorBinding::read("x"),
        TensorBinding::read("mask"),
        TensorBinding::write("y"),
    ],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[
        &[("LOG", 0.0), ("WORKGROUP", 256.0)],
        &[("LOG", 1.0), ("WORKGROUP", 64.0)],
    ],
    pieces: &[&pieces::ROW_REDUCE, &pieces::ROW_WRITE_WALK],
    swaps: &[],
    params: Some(&SoftmaxParams::LAYOUT),
};

pub(crate) static SOFTMAX: KernelSource = SOFTMAX_FILE;

/// The subgroup form, for adapters with SUBGROUP.
pub(crate) static SOFTMAX_SUBGROUP: KernelSource = SOFTMAX_FILE.subgroup_twin("softmax_subgroup");

const KERNEL: RowKernel = RowKernel {
    shared: &SOFTMAX,
    subgroup: &SOFTMAX_SUBGROUP,
};

uniform_params! {
    /// Mirrors `Params` in softmax.wgsl.
    pub(crate) struct SoftmaxParams {
        n: u32,
        rows: u32,
        q: u32,
        causal: u32,
        scale: f32,
        has_mask: u32,
        lead_rank: u32,
        causal_offset: i32,
        neg_inf: f32,
        nan: f32,
        _pad: [u32; 2],
        lead_shape: [u32; MAX_RANK],
        mask_strides: [u32; MAX_RANK],
    }
}

/// Rows up to this long run one per invocation (`short_rows`), longer ones one per
/// workgroup (`main`).
pub(crate) const SHORT_ROW: usize = 32;

pub(crate) fn softmax(g: &GpuContext, x: &Tensor, plan: &Plan, out: &Tensor) -> Result<()> {
    let short = plan.n <= SHORT_ROW;
    let wg = if short { 64 } else { row_workgroup(plan.n) };
    let lead_shape = pad_rank(&plan.lead_shape);
    let mask_strides = pad_rank(&plan.mask_strides);
    let params = SoftmaxParams {
        n: plan.n as u32,
        rows: plan.rows as u32,
        q: plan.q as u32,
        causal: plan.causal as u32,
        scale: plan.scale,
        has_mask: plan.mask.is_some() as u32,
        lead_rank: plan.lead_shape.len() as u32,
        causal_offset: plan.causal_offset as i32,
        neg_inf: f32::NEG_INFINITY,
        nan: f32::NAN,
        _pad: [0; 2],
        lead_shape,
        mask_strides,
    };
    let pipeline = g.pipeline(
        KERNEL.pick(g),
        if short { "short_rows" } else { "main" },
        ShaderHeader::new(vec![x.dtype(); 3]),
        &[("LOG", plan.log as u32 as f64), ("WORKGROUP", wg as f64)],
    )?;
    let mask = plan.mask.as_ref().unwrap_or(x);
    g.dispatch(
        &pipeline,
        "softmax",
        &[x.gpu_buffer(), mask.gpu_buffer(), out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(if short {
            (plan.rows as u32).div_ceil(wg)
        } else {
            plan.rows as u32
        }),
    )
}
