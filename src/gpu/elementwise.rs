//! Launcher for `shaders/elementwise.wgsl`.

use super::shader::{kernel_file, uniform_params, KernelSource, ShaderHeader, TensorBinding};
use super::{fold_groups, GpuContext};
use crate::error::Result;
use crate::ops::elementwise::{BinaryOp, Operand};
use crate::shape::{pad_rank, MAX_RANK};
use crate::tensor::Tensor;

pub(crate) static ELEMENTWISE: KernelSource = KernelSource {
    name: "elementwise",
    source: kernel_file!("elementwise"),
    entry_points: &["main"],
    tensors: &[
        TensorBinding::read("lhs"),
        TensorBinding::read("rhs"),
        TensorBinding::write("out"),
    ],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[
        &[("OP", 0.0)],
        &[("OP", 1.0)],
        &[("OP", 2.0)],
        &[("OP", 3.0)],
    ],
    pieces: &[],
    swaps: &[],
    params: Some(&ElementwiseParams::LAYOUT),
};

const WORKGROUP: u32 = 256;

uniform_params! {
    /// Mirrors `Params` in elementwise.wgsl.
    pub(crate) struct ElementwiseParams {
        n: u32,
        rank: u32,
        mode: u32,
        scalar: f32,
        out_shape: [u32; MAX_RANK],
        lhs_strides: [u32; MAX_RANK],
        rhs_strides: [u32; MAX_RANK],
        rhs_len: u32,
        _pad: [u32; 3],
    }
}

/// True when `small`, without its leading 1s, equals the trailing dimensions of `out`:
/// then element i of `out` pairs with element i % len(small).
fn repeats_along_leading_dims(small: &[usize], out: &[usize]) -> bool {
    let first = small.iter().position(|&d| d != 1).unwrap_or(small.len());
    let core = &small[first..];
    core.len() <= out.len() && out[out.len() - core.len()..] == *core
}

pub(crate) fn binary(
    g: &GpuContext,
    op: BinaryOp,
    lhs: &Tensor,
    rhs: &Operand,
    out: &Tensor,
) -> Result<()> {
    let n = out.len() as u32;
    let (mode, scalar, ls, rs, rhs_buf) = match rhs {
        Operand::Scalar(s) => (2, *s, vec![], vec![], lhs.gpu_buffer()),
        Operand::Tensor(r) if r.shape() == lhs.shape() => (0, 0.0, vec![], vec![], r.gpu_buffer()),
        Operand::Tensor(r)
            if lhs.shape() == out.shape() && repeats_along_leading_dims(r.shape(), out.shape()) =>
        {
            (3, 0.0, vec![], vec![], r.gpu_buffer())
        }
        Operand::Tensor(r) => (
            1,
            0.0,
            crate::shape::broadcast_strides(lhs.shape(), out.shape()),
            crate::shape::broadcast_strides(r.shape(), out.shape()),
            r.gpu_buffer(),
        ),
    };
    let params = ElementwiseParams {
        n,
        rank: out.rank() as u32,
        mode,
        scalar,
        out_shape: pad_rank(out.shape()),
        lhs_strides: pad_rank(&ls),
        rhs_strides: pad_rank(&rs),
        rhs_len: match rhs {
            Operand::Tensor(r) => r.len().max(1) as u32,
            Operand::Scalar(_) => 1,
        },
        _pad: [0; 3],
    };
    let pipeline = g.pipeline(
        &ELEMENTWISE,
        "main",
        ShaderHeader::new(vec![lhs.dtype(); 3]),
        &[("OP", op as u32 as f64)],
    )?;
    g.dispatch(
        &pipeline,
        "elementwise",
        &[lhs.gpu_buffer(), rhs_buf, out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(n.div_ceil(2 * WORKGROUP)),
    )
}
