//! Launcher for `shaders/reduce.wgsl`.

use super::rows::{row_workgroup, RowKernel};
use super::shader::{
    kernel_file, pieces, uniform_params, KernelSource, ShaderHeader, TensorBinding,
};
use super::{fold_groups, GpuContext};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::reduce::Reduction;
use crate::tensor::Tensor;

uniform_params! {
    /// Mirrors `Params` in reduce.wgsl.
    pub(crate) struct ReduceParams {
        n: u32,
        rows: u32,
        _pad: [u32; 2],
    }
}

/// The file as written: shared-memory reductions.
const REDUCE_FILE: KernelSource = KernelSource {
    name: "reduce",
    source: kernel_file!("reduce"),
    entry_points: &["main", "short_rows"],
    tensors: &[
        TensorBinding::read("x"),
        TensorBinding::write("y"),
        TensorBinding::index_write("idx"),
    ],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[
        &[("OP", 0.0), ("WORKGROUP", 256.0)],
        &[("OP", 1.0), ("WORKGROUP", 64.0)],
        &[("OP", 2.0), ("WORKGROUP", 128.0)],
        &[("OP", 3.0), ("WORKGROUP", 256.0)],
    ],
    pieces: &[&pieces::ROW_REDUCE],
    swaps: &[],
    params: Some(&ReduceParams::LAYOUT),
};

pub(crate) static REDUCE: KernelSource = REDUCE_FILE;

/// The subgroup form, for adapters with SUBGROUP.
pub(crate) static REDUCE_SUBGROUP: KernelSource = REDUCE_FILE.subgroup_twin("reduce_subgroup");

const KERNEL: RowKernel = RowKernel {
    shared: &REDUCE,
    subgroup: &REDUCE_SUBGROUP,
};

pub(crate) fn reduce(
    g: &GpuContext,
    op: Reduction,
    x: &Tensor,
    n: usize,
    y: &Tensor,
    idx: Option<&Tensor>,
) -> Result<()> {
    let rows = (x.len() / n) as u32;
    // rows up to SHORT_ROW long: one per invocation (as softmax)
    let short = n <= super::softmax::SHORT_ROW;
    let wg = if short { 64 } else { row_workgroup(n) };
    let pipeline = g.pipeline(
        KERNEL.pick(g),
        if short { "short_rows" } else { "main" },
        ShaderHeader::new(vec![x.dtype(), x.dtype(), DType::U32]),
        &[("OP", op as u32 as f64), ("WORKGROUP", wg as f64)],
    )?;
    // Sum, mean and max never touch idx (its store sits behind OP == 3): a scratch word.
    let scratch;
    let idx_buf = match idx {
        Some(t) => t.gpu_buffer(),
        None => {
            scratch = g.alloc(4)?;
            scratch.buffer().as_entire_buffer_binding()
        }
    };
    g.dispatch(
        &pipeline,
        "reduce",
        &[x.gpu_buffer(), y.gpu_buffer(), idx_buf],
        Some(bytemuck::bytes_of(&ReduceParams {
            n: n as u32,
            rows,
            _pad: [0; 2],
        })),
        fold_groups(if short { rows.div_ceil(wg) } else { rows }),
    )
}
