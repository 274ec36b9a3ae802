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
        src_offset: u32,
        _pad: [u32; 2],
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
    copy_kernel(g, "permute", x, 0, shape, src_strides, out)
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

/// Byte alignment a view's start needs to be bound directly on this device: the
/// adapter's `min_storage_buffer_offset_alignment` (and whole words).
pub(crate) fn view_alignment(g: &GpuContext) -> usize {
    (g.limits.min_storage_buffer_offset_alignment as usize).max(4)
}

/// True when a tensor starting `byte_offset` bytes into its buffer can be bound there.
pub(crate) fn bindable_at(g: &GpuContext, byte_offset: usize) -> bool {
    byte_offset.is_multiple_of(view_alignment(g))
}

/// Copies the block of `x` that starts `offset` elements past its start and walks
/// `shape` with source `strides` (elements) into `out`, in one pass: one buffer copy
/// for a contiguous block starting on a whole word (any dtype), else one strided copy
/// kernel (blocks with gaps, u32 ones included through the kernel's u32 header, and
/// 16-bit blocks starting mid-word).
pub(crate) fn strided_copy(
    g: &GpuContext,
    x: &Tensor,
    offset: usize,
    shape: &[usize],
    strides: &[usize],
    out: &Tensor,
) -> Result<()> {
    let elem = x.dtype().size_in_bytes();
    let start = x.byte_offset() + offset * elem;
    let contiguous = shape.len() == 1 && strides[0] == 1;
    if contiguous && start.is_multiple_of(4) {
        let src = x.wgpu_buffer().expect("a GPU tensor has a buffer");
        let dst = out.wgpu_buffer().expect("a GPU tensor has a buffer");
        let mut stream = g.lock_stream();
        stream.encoder(&g.device).copy_buffer_to_buffer(
            src,
            start as u64,
            dst,
            out.byte_offset() as u64,
            ((shape[0] * elem) as u64).next_multiple_of(4),
        );
        g.after_record(&mut stream);
        return Ok(());
    }
    copy_kernel(g, "strided copy", x, offset, shape, strides, out)
}

/// The layout shader's strided copy (the `permute` entry point): `out`, walked in order
/// over `shape`, takes `x`'s element at `offset` plus the dot of the index and `strides`.
fn copy_kernel(
    g: &GpuContext,
    label: &'static str,
    x: &Tensor,
    offset: usize,
    shape: &[usize],
    strides: &[usize],
    out: &Tensor,
) -> Result<()> {
    let n = out.len() as u32;
    let params = LayoutParams {
        n,
        rank: shape.len() as u32,
        src_offset: offset as u32,
        out_shape: pad_rank(shape),
        src_strides: pad_rank(strides),
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
        label,
        &[x.gpu_buffer(), out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(n.div_ceil(2 * WORKGROUP)),
    )
}
