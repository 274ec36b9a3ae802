//! Launcher for `shaders/kv_cache.wgsl`: KV-cache appends at a device position.

use super::shader::{kernel_file, uniform_params, KernelSource, ShaderHeader, TensorBinding};
use super::{fold_groups, GpuContext};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::kv_cache::Append;
use crate::tensor::Tensor;

pub(crate) static KV_CACHE: KernelSource = KernelSource {
    name: "kv_cache",
    source: kernel_file!("kv_cache"),
    entry_points: &["main"],
    tensors: &[
        TensorBinding::read("k_new"),
        TensorBinding::read("v_new"),
        TensorBinding::index_read("pos"),
        TensorBinding::write("k_cache"),
        TensorBinding::write("v_cache"),
        TensorBinding::index_write("lens"),
    ],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[&[("WORKGROUP", 256.0)]],
    pieces: &[],
    swaps: &[],
    params: Some(&KvCacheParams::LAYOUT),
};

const WORKGROUP: u32 = 256;

uniform_params! {
    /// Mirrors `Params` in kv_cache.wgsl.
    pub(crate) struct KvCacheParams {
        batch: u32,
        kv_heads: u32,
        n: u32,
        max_len: u32,
        head_dim: u32,
        v_dim: u32,
        pos_count: u32,
        _pad0: u32,
        k_sb: u32,
        k_sh: u32,
        k_sr: u32,
        v_sb: u32,
        v_sh: u32,
        v_sr: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn append(
    g: &GpuContext,
    a: &Append,
    k_new: &Tensor,
    v_new: &Tensor,
    pos: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    lens: &Tensor,
    fault: &super::FaultSlot,
) -> Result<()> {
    let u = |x: usize| x as u32;
    let [k_sb, k_sh, k_sr] = a.k_strides.map(u);
    let [v_sb, v_sh, v_sr] = a.v_strides.map(u);
    let params = KvCacheParams {
        batch: u(a.batch),
        kv_heads: u(a.kv_heads),
        n: u(a.n),
        max_len: u(a.max_len),
        head_dim: u(a.head_dim),
        v_dim: u(a.v_dim),
        pos_count: u(pos.len()),
        _pad0: 0,
        k_sb,
        k_sh,
        k_sr,
        v_sb,
        v_sh,
        v_sr,
        _pad1: 0,
        _pad2: 0,
    };
    let dt = k_cache.dtype();
    let pipeline = g.pipeline(
        &KV_CACHE,
        "main",
        ShaderHeader::new(vec![dt, dt, DType::U32, dt, dt, DType::U32]),
        &[("WORKGROUP", WORKGROUP as f64)],
    )?;
    let total = u(a.batch * a.kv_heads * a.n * (a.head_dim + a.v_dim));
    g.dispatch_reporting_faults(
        &pipeline,
        "kv_cache append",
        &[
            k_new.gpu_buffer(),
            v_new.gpu_buffer(),
            pos.gpu_buffer(),
            k_cache.gpu_buffer(),
            v_cache.gpu_buffer(),
            lens.gpu_buffer(),
        ],
        bytemuck::bytes_of(&params),
        fold_groups(total.div_ceil(WORKGROUP)),
        fault,
    )
}
