//! Launcher for `shaders/embedding.wgsl`.

use super::shader::{kernel_file, uniform_params, KernelSource, ShaderHeader, TensorBinding};
use super::{fold_groups, GpuContext};
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::Tensor;

uniform_params! {
    /// Mirrors `Params` in embedding.wgsl.
    pub(crate) struct EmbeddingParams {
        n: u32,
        d: u32,
        vocab: u32,
        _pad: u32,
    }
}

pub(crate) static EMBEDDING: KernelSource = KernelSource {
    name: "embedding",
    source: kernel_file!("embedding"),
    entry_points: &["main"],
    tensors: &[
        TensorBinding::index_read("ids"),
        TensorBinding::read("table"),
        TensorBinding::write("out"),
    ],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[&[]],
    pieces: &[],
    swaps: &[],
    params: Some(&EmbeddingParams::LAYOUT),
};

const WORKGROUP: u32 = 256;

pub(crate) fn embedding(
    g: &GpuContext,
    ids: &Tensor,
    table: &Tensor,
    vocab: usize,
    d: usize,
    out: &Tensor,
    fault: &super::FaultSlot,
) -> Result<()> {
    let n = out.len() as u32;
    let pipeline = g.pipeline(
        &EMBEDDING,
        "main",
        ShaderHeader::new(vec![DType::U32, table.dtype(), table.dtype()]),
        &[],
    )?;
    g.dispatch_reporting_faults(
        &pipeline,
        "embedding",
        &[ids.gpu_buffer(), table.gpu_buffer(), out.gpu_buffer()],
        bytemuck::bytes_of(&EmbeddingParams {
            n,
            d: d as u32,
            vocab: vocab as u32,
            _pad: 0,
        }),
        fold_groups(n.div_ceil(2 * WORKGROUP)),
        fault,
    )
}
