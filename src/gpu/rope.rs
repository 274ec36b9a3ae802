//! Launcher for `shaders/rope.wgsl`.

use super::buffer_pool::PooledBuffer;
use super::shader::{kernel_file, uniform_params, KernelSource, ShaderHeader, TensorBinding};
use super::{fold_groups, GpuContext};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::rope::Plan;
use crate::tensor::Tensor;
use std::sync::{Arc, Weak};

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

/// A host angle table (held weakly, so its identity stays unique) and its device copy.
pub(crate) type DeviceTable = (Weak<Vec<[f32; 2]>>, Arc<PooledBuffer>);

/// Device copies kept per context: as many as the host keeps tables.
const DEVICE_TABLES: usize = 8;

/// The device copy of `table`, uploaded once: the layers of a forward rotate the same
/// positions with the same host table (`ops::rope::angle_table` caches it), so one upload
/// serves them all. The f32 (cos, sin) pairs travel as their bit patterns in a u32
/// buffer, which the header leaves alone whatever x's dtype.
fn device_table(g: &GpuContext, table: &Arc<Vec<[f32; 2]>>) -> Result<Arc<PooledBuffer>> {
    let key = Arc::downgrade(table);
    let mut cache = g.rope_tables.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, buffer)) = cache.iter().find(|(k, _)| k.ptr_eq(&key)) {
        return Ok(buffer.clone());
    }
    cache.retain(|(k, _)| k.strong_count() > 0);
    if cache.len() >= DEVICE_TABLES {
        cache.remove(0);
    }
    let buffer = Arc::new(g.upload(bytemuck::cast_slice(table.as_slice()))?);
    cache.push((key, buffer.clone()));
    Ok(buffer)
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
    let table = device_table(g, &plan.table)?;
    let pipeline = g.pipeline(
        &ROPE,
        "main",
        ShaderHeader::new(vec![x.dtype(), DType::U32, x.dtype()]),
        &[],
    )?;
    g.dispatch(
        &pipeline,
        "rope",
        &[
            x.gpu_buffer(),
            table.buffer().as_entire_buffer_binding(),
            out.gpu_buffer(),
        ],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(n.div_ceil(2 * WORKGROUP)),
    )
}
