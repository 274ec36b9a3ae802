//! Launcher for `shaders/attention.wgsl` (prefill, and the split half of split-KV
//! decoding), its barrier-free twin `shaders/attention_subgroup.wgsl` (adapters with
//! SUBGROUP and a fixed subgroup size) and `shaders/attention_merge.wgsl` (the merge
//! half).

use super::driver_quirks::{LOOP_LIMITED_KEYS, LOOP_LIMITED_MAX_KEYS};
use super::fixed_subgroup_size;
use super::matmul::flag;
use super::shader::{
    kernel_file, octets_fit, pieces, uniform_params, KernelSource, ShaderHeader, TensorBinding,
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
    pieces: &[&pieces::ATTENTION_COMMON, &pieces::ONLINE_SOFTMAX],
    swaps: &[],
    params: Some(&AttentionParams::LAYOUT),
};

/// The subgroup form: same bindings, grid and partials, no workgroup memory.
pub(crate) static ATTENTION_SUBGROUP: KernelSource = KernelSource {
    name: "attention_subgroup",
    source: kernel_file!("attention_subgroup"),
    specialisations: &[
        &[],
        &[
            ("SG", 8.0),
            ("TM", 8.0),
            ("TN", 8.0),
            ("VC", 16.0),
            ("WGS", 8.0),
            ("OCTETS_V", 1.0),
        ],
        &[
            ("SG", 4.0),
            ("TM", 1.0),
            ("TN", 4.0),
            ("VC", 64.0),
            ("WGS", 16.0),
        ],
        &[
            ("SG", 32.0),
            ("TM", 5.0),
            ("TN", 2.0),
            ("VC", 12.0),
            ("WGS", 2.0),
        ],
        &[
            ("SG", 64.0),
            ("TM", 8.0),
            ("TN", 1.0),
            ("VC", 1.0),
            ("WGS", 1.0),
        ],
        &[
            ("SG", 128.0),
            ("TM", 8.0),
            ("TN", 4.0),
            ("VC", 2.0),
            ("WGS", 1.0),
        ],
    ],
    ..ATTENTION
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

/// How the subgroup kernel spreads the work (`shaders/attention_subgroup.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubgroupTiling {
    /// The adapter's fixed subgroup size.
    pub sg: u32,
    /// Query rows per subgroup.
    pub rows: u32,
    /// Keys per lane in a block of `keys · sg`.
    pub keys: u32,
    /// v_dim columns per lane.
    pub cols: u32,
    /// Subgroups per workgroup.
    pub subgroups: u32,
    /// Workgroups along the rows of one kv head.
    pub row_tiles: u32,
}

/// Which kernel walks the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// K/V tiles staged in workgroup memory (`shaders/attention.wgsl`), any adapter.
    Shared(Tiling),
    /// Subgroup shuffles and reductions, no workgroup memory or barriers.
    Subgroup(SubgroupTiling),
}

impl Walk {
    /// Keys walked per step (chunks of split-KV are multiples of it).
    fn block(&self) -> usize {
        match self {
            Walk::Shared(t) => t.keys as usize,
            Walk::Subgroup(t) => (t.keys * t.sg) as usize,
        }
    }

    fn row_tiles(&self) -> u32 {
        match self {
            Walk::Shared(t) => t.row_tiles,
            Walk::Subgroup(t) => t.row_tiles,
        }
    }
}

impl std::fmt::Display for Walk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Walk::Shared(t) => write!(
                f,
                "{} rows/workgroup, {} lanes/row, {} keys/tile",
                WORKGROUP as u32 / t.lanes,
                t.lanes,
                t.keys
            ),
            Walk::Subgroup(t) => write!(
                f,
                "subgroup {}: {} rows/subgroup, {} subgroups/workgroup, {} keys/block",
                t.sg,
                t.rows,
                t.subgroups,
                t.keys * t.sg
            ),
        }
    }
}

/// Which attention kernel runs, chosen once per call; the launcher runs exactly this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttentionLaunch {
    /// One pass: each workgroup owns a tile of query rows and walks every key tile they
    /// may see.
    Prefill(Walk),
    /// Split-KV flash-decoding: `splits` workgroups per row tile each walk `chunk` keys
    /// and write a partial triple; a merge pass combines them.
    DecodeSplit { walk: Walk, splits: u32, chunk: u32 },
}

impl std::fmt::Display for AttentionLaunch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttentionLaunch::Prefill(walk) => write!(f, "prefill({walk})"),
            AttentionLaunch::DecodeSplit {
                walk,
                splits,
                chunk,
            } => write!(
                f,
                "decode-split({splits} splits of {chunk} keys, {walk}) + merge"
            ),
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
    pub(crate) fn select(g: &GpuContext, info: &crate::DeviceInfo, plan: &Plan) -> Result<Self> {
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
        let walk = match fixed_subgroup_size(g, info).and_then(|sg| subgroup_tiling(sg, plan)) {
            Some(t) => Walk::Subgroup(t),
            None => Walk::Shared(shared_tiling(plan, decode)),
        };
        let block = walk.block();
        if !decode {
            if g.loop_limited() && plan.kv_len > LOOP_LIMITED_KEYS {
                // llvmpipe ends loops after 65,535 iterations per invocation
                // (gpu::driver_quirks): walk the keys in chunks, merged as in decode.
                // Longer chunks (up to 4x, still inside the budget) where the partials
                // of 1,024-key chunks would not fit one binding.
                let part_row =
                    (plan.batch * plan.kv_heads * plan.rows() * (plan.v_dim + 2) * 4) as u64;
                let fit = (g.binding_limit() / part_row.max(1)).max(1) as usize;
                let chunk = (LOOP_LIMITED_KEYS / block * block)
                    .max(plan.kv_len.div_ceil(fit).next_multiple_of(block));
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
                    walk,
                    splits: plan.kv_len.div_ceil(chunk) as u32,
                    chunk: chunk as u32,
                });
            }
            return Ok(AttentionLaunch::Prefill(walk));
        }
        let splits = plan.kv_len.div_ceil(SPLIT_KEYS).min(MAX_SPLITS);
        let mut chunk = plan.kv_len.div_ceil(splits).next_multiple_of(block);
        if g.loop_limited() {
            chunk = chunk.min(LOOP_LIMITED_KEYS / block * block);
        }
        let splits = plan.kv_len.div_ceil(chunk);
        Ok(AttentionLaunch::DecodeSplit {
            walk,
            splits: splits as u32,
            chunk: chunk as u32,
        })
    }
}

/// The workgroup-memory kernel's tiling: lanes per row by the head dimension (eight in
/// decode, where rows are few).
fn shared_tiling(plan: &Plan, decode: bool) -> Tiling {
    let maxd = plan.head_dim.max(plan.v_dim);
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
    Tiling {
        lanes: lanes as u32,
        per: per as u32,
        keys: keys as u32,
        row_tiles: plan.rows().div_ceil(WORKGROUP / lanes) as u32,
    }
}

/// Keys per lane in one block of the subgroup kernel. On lavapipe (h8 s1024 d64 causal,
/// GFLOP/s, one run): 8 keys 2.2, 4 keys 0.8–2.0 — more keys per lane means fewer q
/// shuffles per product.
const SUBGROUP_KEYS: u32 = 8;

/// Most accumulators per lane of the subgroup kernel (rows × columns): 128 lets head
/// dim 128 keep 8 rows per subgroup at subgroup size 8 (lavapipe, h32/8 s512 d128
/// causal: 0.6 -> 1.7 GFLOP/s, 1.4x -> 2.2x the unfused path, against a cap of 64 and 4 rows).
const SUBGROUP_ACC: usize = 128;

/// The subgroup kernel's tiling at subgroup size `sg`, or None where v_dim needs more
/// columns per lane than it holds.
fn subgroup_tiling(sg: u32, plan: &Plan) -> Option<SubgroupTiling> {
    let sg_n = sg as usize;
    // columns per lane, bucketed like the shared kernel's registers
    let cols = match plan.v_dim.div_ceil(sg_n) {
        c @ (1 | 2) => c,
        c => c.next_multiple_of(4),
    };
    if cols > SUBGROUP_ACC {
        return None;
    }
    let rows = (SUBGROUP_ACC / cols).min(8).min(plan.rows());
    let subgroups = if plan.rows() <= rows {
        1
    } else {
        (64 / sg_n).max(1)
    };
    Some(SubgroupTiling {
        sg,
        rows: rows as u32,
        keys: SUBGROUP_KEYS,
        cols: cols as u32,
        subgroups: subgroups as u32,
        row_tiles: plan.rows().div_ceil(rows * subgroups) as u32,
    })
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
    let launch = AttentionLaunch::select(g, q.device().info(), plan)?;
    let (walk, splits, chunk) = match launch {
        AttentionLaunch::Prefill(w) => (w, 1, plan.kv_len.max(1) as u32),
        AttentionLaunch::DecodeSplit {
            walk,
            splits,
            chunk,
        } => (walk, splits, chunk),
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
        row_tiles: walk.row_tiles(),
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
    let header = ShaderHeader::new(vec![dt, dt, dt, DType::U32, DType::U32, dt, DType::U32]);
    let (kernel, header, constants) = match walk {
        Walk::Shared(t) => (
            &ATTENTION,
            header,
            vec![
                ("TPR", t.lanes as f64),
                ("PER", t.per as f64),
                ("BK", t.keys as f64),
            ],
        ),
        Walk::Subgroup(t) => {
            // V rows in octets (see OCTETS_V in the shader)
            let octets_v = t.cols.is_multiple_of(8)
                && plan.v_dim == (t.cols * t.sg) as usize
                && octets_fit(v, [v_sb, v_sh, v_sr].map(|s| s as usize));
            let header = if octets_v {
                header.with_quads(2)
            } else {
                header
            };
            let constants = vec![
                ("SG", t.sg as f64),
                ("TM", t.rows as f64),
                ("TN", t.keys as f64),
                ("VC", t.cols as f64),
                ("WGS", t.subgroups as f64),
                ("OCTETS_V", flag(octets_v)),
            ];
            (&ATTENTION_SUBGROUP, header, constants)
        }
    };
    let pipeline = g.pipeline(kernel, "main", header, &constants)?;
    let rows = plan.rows();
    let part = if splits > 1 {
        let bytes =
            (plan.batch * plan.kv_heads * rows * splits as usize * (plan.v_dim + 2) * 4) as u64;
        g.check_binding(|| "the split-KV partials of attention".into(), bytes)?;
        g.alloc(bytes)?
    } else {
        g.alloc(16)?
    };
    let groups = (plan.batch * plan.kv_heads * walk.row_tiles() as usize * splits as usize) as u32;
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
