//! Launcher for `shaders/attention.wgsl` (prefill, and the split half of split-KV
//! decoding) and `shaders/attention_merge.wgsl` (the merge half).

use super::driver_quirks::{LOOP_LIMITED_KEYS, LOOP_LIMITED_MAX_KEYS};
use super::shader::{
    kernel_file, pieces, uniform_params, KernelSource, ShaderHeader, TensorBinding,
};
use super::{fold_groups, GpuContext};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::attention::Plan;
use crate::tensor::Tensor;

pub(crate) static ATTENTION: KernelSource = KernelSource {
    name: "attention",
    source: kernel_file!("attention"),
    entry_points: &["main"],
    tensors: &[
        TensorBinding::read("q"),
        TensorBinding::read("k"),
        TensorBinding::read("v"),
        TensorBinding::index_read("mask"),
        TensorBinding::index_read("lens"),
        TensorBinding::write("o"),
        TensorBinding::index_write("part"),
    ],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[
        &[("TPR", 1.0), ("PER", 32.0), ("BK", 32.0)],
        &[("TPR", 4.0), ("PER", 32.0), ("BK", 8.0)],
        &[("TPR", 8.0), ("PER", 32.0), ("BK", 4.0)],
        &[("TPR", 8.0), ("PER", 8.0), ("BK", 16.0)],
    ],
    pieces: &[&pieces::ONLINE_SOFTMAX],
    swaps: &[],
    params: Some(&AttentionParams::LAYOUT),
};

pub(crate) static ATTENTION_MERGE: KernelSource = KernelSource {
    name: "attention_merge",
    source: kernel_file!("attention_merge"),
    entry_points: &["merge"],
    tensors: &[TensorBinding::index_read("part"), TensorBinding::write("o")],
    mixed_dtypes: false,
    enables: &[],
    specialisations: &[&[]],
    pieces: &[&pieces::ONLINE_SOFTMAX],
    swaps: &[],
    params: Some(&AttentionMergeParams::LAYOUT),
};

/// Largest head dimension (q/k or v) the kernels take: 32 registers × 8 lanes.
pub(crate) const MAX_HEAD_DIM: usize = 256;
/// Invocations per workgroup (fixed in the shader).
const WORKGROUP: usize = 64;

/// How the per-row work is spread over a workgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tiling {
    /// Invocations per query row.
    pub lanes: u32,
    /// head_dim elements per invocation.
    pub per: u32,
    /// Keys per K/V tile in workgroup memory.
    pub keys: u32,
    /// Workgroups along the rows of one kv head.
    pub row_tiles: u32,
}

/// Which attention kernel runs, chosen once per call; the launcher runs exactly this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttentionLaunch {
    /// One pass: each workgroup owns a tile of query rows and walks every key tile they
    /// may see.
    Prefill(Tiling),
    /// Split-KV flash-decoding: `splits` workgroups per row tile each walk `chunk` keys
    /// and write a partial triple; a merge pass combines them.
    DecodeSplit {
        tiling: Tiling,
        splits: u32,
        chunk: u32,
    },
}

impl std::fmt::Display for AttentionLaunch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |f: &mut std::fmt::Formatter<'_>, t: &Tiling| {
            write!(
                f,
                "{} rows/workgroup, {} lanes/row, {} keys/tile",
                WORKGROUP as u32 / t.lanes,
                t.lanes,
                t.keys
            )
        };
        match self {
            AttentionLaunch::Prefill(tiling) => {
                write!(f, "prefill(")?;
                t(f, tiling)?;
                write!(f, ")")
            }
            AttentionLaunch::DecodeSplit {
                tiling,
                splits,
                chunk,
            } => {
                write!(f, "decode-split({splits} splits of {chunk} keys, ")?;
                t(f, tiling)?;
                write!(f, ") + merge")
            }
        }
    }
}

/// Rows per kv head at or below which a long key range is split across workgroups.
const DECODE_ROWS: usize = 32;
/// Keys from which splitting pays.
const DECODE_MIN_KEYS: usize = 512;
/// Target keys per split.
const SPLIT_KEYS: usize = 256;
/// Most splits per row tile.
const MAX_SPLITS: usize = 128;

impl AttentionLaunch {
    pub(crate) fn select(g: &GpuContext, plan: &Plan) -> Result<Self> {
        let maxd = plan.head_dim.max(plan.v_dim);
        if maxd > MAX_HEAD_DIM {
            return Err(Error::shape(
                "attention",
                format!(
                    "head dimensions up to {MAX_HEAD_DIM} run on the GPU (q/k {}, v {}); split the heads or use the CPU device",
                    plan.head_dim, plan.v_dim
                ),
            ));
        }
        let decode =
            plan.q_len <= 4 && plan.rows() <= DECODE_ROWS && plan.kv_len >= DECODE_MIN_KEYS;
        let lanes = if decode {
            8
        } else {
            [1usize, 2, 4, 8]
                .into_iter()
                .find(|l| 32 * l >= maxd)
                .unwrap_or(8)
        };
        // Both bucketed so the pipeline key never carries a head dimension: registers per
        // lane round up to a multiple of 4 (the kernel masks past head_dim), keys per tile
        // down to one (the tile stays within its 2048 words).
        let per = match maxd.div_ceil(lanes) {
            p @ (1 | 2) => p,
            p => p.next_multiple_of(4),
        };
        let keys = ((2048 / (plan.head_dim + plan.v_dim)).min(32) / 4 * 4).max(4);
        let row_tiles = plan.rows().div_ceil(WORKGROUP / lanes);
        let tiling = Tiling {
            lanes: lanes as u32,
            per: per as u32,
            keys: keys as u32,
            row_tiles: row_tiles as u32,
        };
        if !decode {
            if g.loop_limited() && plan.kv_len > LOOP_LIMITED_KEYS {
                // llvmpipe ends loops after 65,535 iterations per invocation
                // (gpu::driver_quirks): walk the keys in chunks, merged as in decode.
                // Longer chunks (up to 4x, still inside the budget) where the partials
                // of 1,024-key chunks would not fit one binding.
                let part_row =
                    (plan.batch * plan.kv_heads * plan.rows() * (plan.v_dim + 2) * 4) as u64;
                let fit = (g.binding_limit() / part_row.max(1)).max(1) as usize;
                let chunk = (LOOP_LIMITED_KEYS / keys * keys)
                    .max(plan.kv_len.div_ceil(fit).next_multiple_of(keys));
                if chunk > LOOP_LIMITED_MAX_KEYS {
                    return Err(Error::TooLarge {
                        what: format!(
                            "attention over {} keys for {} query rows on {} (its shader loops stop after 65,535 iterations, so keys go in chunks whose partial results must fit one binding)",
                            plan.kv_len,
                            plan.rows(),
                            g.name
                        ),
                        bytes: part_row * plan.kv_len.div_ceil(LOOP_LIMITED_MAX_KEYS) as u64,
                        limit: g.binding_limit(),
                        device: g.name.clone(),
                    });
                }
                return Ok(AttentionLaunch::DecodeSplit {
                    tiling,
                    splits: plan.kv_len.div_ceil(chunk) as u32,
                    chunk: chunk as u32,
                });
            }
            return Ok(AttentionLaunch::Prefill(tiling));
        }
        let splits = plan.kv_len.div_ceil(SPLIT_KEYS).min(MAX_SPLITS);
        let mut chunk = plan.kv_len.div_ceil(splits).next_multiple_of(keys);
        if g.loop_limited() {
            chunk = chunk.min(LOOP_LIMITED_KEYS / keys * keys);
        }
        let splits = plan.kv_len.div_ceil(chunk);
        Ok(AttentionLaunch::DecodeSplit {
            tiling,
            splits: splits as u32,
            chunk: chunk as u32,
        })
    }
}

uniform_params! {
    /// Mirrors `Params` in attention.wgsl.
    pub(crate) struct AttentionParams {
        batch: u32,
        kv_heads: u32,
        group: u32,
        q_len: u32,
        kv_len: u32,
        head_dim: u32,
        v_dim: u32,
        row_tiles: u32,
        q_sb: u32,
        q_sh: u32,
        q_sr: u32,
        k_sb: u32,
        k_sh: u32,
        k_sr: u32,
        v_sb: u32,
        v_sh: u32,
        v_sr: u32,
        o_sb: u32,
        o_sh: u32,
        o_sr: u32,
        m_sb: u32,
        m_sh: u32,
        m_sr: u32,
        has_mask: u32,
        scale: f32,
        softcap: f32,
        causal: u32,
        window: u32,
        has_lens: u32,
        splits: u32,
        chunk: u32,
        _pad0: u32,
    }
}

uniform_params! {
    /// Mirrors `Params` in attention_merge.wgsl.
    pub(crate) struct AttentionMergeParams {
        batch: u32,
        kv_heads: u32,
        group: u32,
        q_len: u32,
        v_dim: u32,
        splits: u32,
        o_sb: u32,
        o_sh: u32,
        o_sr: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

pub(crate) fn attention(
    g: &GpuContext,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    plan: &Plan,
    out: &Tensor,
    fault: &super::FaultSlot,
) -> Result<()> {
    let launch = AttentionLaunch::select(g, plan)?;
    let (tiling, splits, chunk) = match launch {
        AttentionLaunch::Prefill(t) => (t, 1, plan.kv_len.max(1) as u32),
        AttentionLaunch::DecodeSplit {
            tiling,
            splits,
            chunk,
        } => (tiling, splits, chunk),
    };
    let u = |x: usize| x as u32;
    let mask = match &plan.mask {
        Some(m) if m.dtype() != DType::F32 => Some(m.cast(DType::F32)?),
        other => other.clone(),
    };
    let [q_sb, q_sh, q_sr] = plan.q_strides.map(u);
    let [k_sb, k_sh, k_sr] = plan.k_strides.map(u);
    let [v_sb, v_sh, v_sr] = plan.v_strides.map(u);
    let [o_sb, o_sh, o_sr] = plan.o_strides.map(u);
    let [m_sb, m_sh, m_sr] = plan.mask_strides.map(u);
    let params = AttentionParams {
        batch: u(plan.batch),
        kv_heads: u(plan.kv_heads),
        group: u(plan.group),
        q_len: u(plan.q_len),
        kv_len: u(plan.kv_len),
        head_dim: u(plan.head_dim),
        v_dim: u(plan.v_dim),
        row_tiles: tiling.row_tiles,
        q_sb,
        q_sh,
        q_sr,
        k_sb,
        k_sh,
        k_sr,
        v_sb,
        v_sh,
        v_sr,
        o_sb,
        o_sh,
        o_sr,
        m_sb,
        m_sh,
        m_sr,
        has_mask: mask.is_some() as u32,
        scale: plan.scale,
        softcap: plan.softcap,
        causal: plan.causal as u32,
        window: u(plan.window),
        has_lens: plan.kv_lengths.is_some() as u32,
        splits,
        chunk,
        _pad0: 0,
    };
    let dt = q.dtype();
    let pipeline = g.pipeline(
        &ATTENTION,
        "main",
        ShaderHeader::new(vec![dt, dt, dt, DType::U32, DType::U32, dt, DType::U32]),
        &[
            ("TPR", tiling.lanes as f64),
            ("PER", tiling.per as f64),
            ("BK", tiling.keys as f64),
        ],
    )?;
    let rows = plan.rows();
    let part = if splits > 1 {
        let bytes =
            (plan.batch * plan.kv_heads * rows * splits as usize * (plan.v_dim + 2) * 4) as u64;
        g.check_binding(|| "the split-KV partials of attention".into(), bytes)?;
        g.alloc(bytes)?
    } else {
        g.alloc(16)?
    };
    let groups = (plan.batch * plan.kv_heads * tiling.row_tiles as usize * splits as usize) as u32;
    g.dispatch_reporting_faults(
        &pipeline,
        "attention",
        &[
            q.gpu_buffer(),
            k.gpu_buffer(),
            v.gpu_buffer(),
            mask.as_ref().unwrap_or(q).gpu_buffer(),
            plan.kv_lengths.as_ref().unwrap_or(q).gpu_buffer(),
            out.gpu_buffer(),
            part.buffer().as_entire_buffer_binding(),
        ],
        bytemuck::bytes_of(&params),
        fold_groups(groups),
        fault,
    )?;
    if splits == 1 {
        return Ok(());
    }
    let merge = g.pipeline(
        &ATTENTION_MERGE,
        "merge",
        ShaderHeader::new(vec![DType::U32, dt]),
        &[],
    )?;
    let mp = AttentionMergeParams {
        batch: u(plan.batch),
        kv_heads: u(plan.kv_heads),
        group: u(plan.group),
        q_len: u(plan.q_len),
        v_dim: u(plan.v_dim),
        splits,
        o_sb,
        o_sh,
        o_sr,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    g.dispatch(
        &merge,
        "attention merge",
        &[part.buffer().as_entire_buffer_binding(), out.gpu_buffer()],
        Some(bytemuck::bytes_of(&mp)),
        fold_groups(u(plan.batch * plan.kv_heads * rows)),
    )
}
