//! Launcher for `shaders/norm.wgsl`.

use super::rows::{row_workgroup, RowKernel};
use super::shader::{
    kernel_file, pieces, uniform_params, KernelSource, ShaderHeader, TensorBinding,
};
use super::{fold_groups, GpuContext};
use crate::error::Result;
use crate::tensor::Tensor;

/// The file as written: shared-memory reductions.
const NORM_FILE: KernelSource = KernelSource {
    name: "norm",
    source: kernel_file!("norm"),
    entry_points: &["main", "short_rows"],
    tensors: &[
        TensorBinding::read("x"),
        TensorBinding::read("res"),
        TensorBinding::read("weight"),
        TensorBinding::read("bias"),
        TensorBinding::write("y"),
        TensorBinding::write("h"),
    ],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[
        &[("LAYER", 0.0), ("RESIDUAL", 0.0), ("WORKGROUP", 256.0)],
        &[("LAYER", 0.0), ("RESIDUAL", 1.0), ("WORKGROUP", 128.0)],
        &[("LAYER", 1.0), ("RESIDUAL", 0.0), ("WORKGROUP", 64.0)],
        &[("LAYER", 1.0), ("RESIDUAL", 1.0), ("WORKGROUP", 256.0)],
        &[
            ("LAYER", 1.0),
            ("RESIDUAL", 1.0),
            ("WRITE_SUM", 0.0),
            ("WORKGROUP", 64.0),
        ],
        &[("L2", 1.0), ("WORKGROUP", 256.0)],
    ],
    pieces: &[&pieces::ROW_REDUCE, &pieces::ROW_WRITE_WALK],
    swaps: &[],
    params: Some(&NormParams::LAYOUT),
};

pub(crate) static NORM: KernelSource = NORM_FILE;

/// The subgroup form, for adapters with SUBGROUP.
pub(crate) static NORM_SUBGROUP: KernelSource = NORM_FILE.subgroup_twin("norm_subgroup");

const KERNEL: RowKernel = RowKernel {
    shared: &NORM,
    subgroup: &NORM_SUBGROUP,
};

uniform_params! {
    /// Mirrors `Params` in norm.wgsl.
    pub(crate) struct NormParams {
        n: u32,
        rows: u32,
        eps: f32,
        nan: f32,
    }
}

/// `y = x / max(‖x‖₂, eps)` per row: the kernel's L2 form (x stands in for the weight
/// and bias bindings, which it does not read).
pub(crate) fn l2_normalize(g: &GpuContext, x: &Tensor, eps: f32, y: &Tensor) -> Result<()> {
    norm(g, x, None, x, None, eps, y, None, true)
}

/// Normalises the rows of `x` (+ `res`) into `y`, writing the sum to `h` when `res` is
/// given; layer norm when `b` is given, RMS norm otherwise, the L2 form with `l2`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn norm(
    g: &GpuContext,
    x: &Tensor,
    res: Option<&Tensor>,
    w: &Tensor,
    b: Option<&Tensor>,
    eps: f32,
    y: &Tensor,
    h: Option<&Tensor>,
    l2: bool,
) -> Result<()> {
    let n = x.shape()[x.rank() - 1];
    let rows = x.len() / n;
    // rows up to SHORT_ROW long: one per invocation (as softmax)
    let short = n <= super::softmax::SHORT_ROW;
    let wg = if short { 64 } else { row_workgroup(n) };
    let params = NormParams {
        n: n as u32,
        rows: rows as u32,
        eps,
        nan: f32::NAN,
    };
    let pipeline = g.pipeline(
        KERNEL.pick(g),
        if short { "short_rows" } else { "main" },
        ShaderHeader::new(vec![x.dtype(); 6]),
        &[
            ("LAYER", b.is_some() as u32 as f64),
            ("RESIDUAL", res.is_some() as u32 as f64),
            ("WRITE_SUM", h.is_some() as u32 as f64),
            ("L2", l2 as u32 as f64),
            ("WORKGROUP", wg as f64),
        ],
    )?;
    // Unused bindings still need a buffer: inputs alias x, the unused output a scratch
    // word the kernel never touches (its stores sit behind RESIDUAL && WRITE_SUM).
    let scratch;
    let h_buf = match h {
        Some(h) => h.gpu_buffer(),
        None => {
            scratch = g.alloc(4)?;
            scratch.buffer().as_entire_buffer_binding()
        }
    };
    g.dispatch(
        &pipeline,
        "norm",
        &[
            x.gpu_buffer(),
            res.unwrap_or(x).gpu_buffer(),
            w.gpu_buffer(),
            b.unwrap_or(w).gpu_buffer(),
            y.gpu_buffer(),
            h_buf,
        ],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(if short {
            (rows as u32).div_ceil(wg)
        } else {
            rows as u32
        }),
    )
}
