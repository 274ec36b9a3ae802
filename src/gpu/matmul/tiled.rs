//! The tiled GEMM (`shaders/matmul_tiled.wgsl`) and its split-K reduction
//! (`shaders/matmul_reduce.wgsl`).

use super::target_groups;
use super::{bias_binding, epilogue_constants, flag, pairs_aligned, MatmulParams, AB_BIAS_C};
use crate::autotune::TileConfig;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::driver_quirks::LOOP_LIMITED_K_CHUNK;
use crate::gpu::shader::{kernel_file, pieces, KernelSource, ShaderHeader, TensorBinding};
use crate::gpu::{fold_groups, GpuContext};
use crate::ops::matmul::MatmulPlan;
use crate::tensor::Tensor;

/// Shared-memory tiled, register-blocked, double-buffered GEMM (also split K's first pass).
pub(crate) static MATMUL_TILED: KernelSource = KernelSource {
    name: "matmul_tiled",
    source: kernel_file!("matmul_tiled"),
    entry_points: &["main"],
    tensors: AB_BIAS_C,
    mixed_dtypes: true,
    enables: &[],
    specialisations: &[
        &[],
        &[
            ("BM", 32.0),
            ("BN", 32.0),
            ("BK", 16.0),
            ("TM", 4.0),
            ("TN", 4.0),
            ("A_KCONTIG", 0.0),
            ("B_NCONTIG", 0.0),
            ("VEC2_A", 1.0),
            ("VEC2_B", 1.0),
            ("HAS_BIAS", 1.0),
            ("ACT", 1.0),
        ],
        &[
            ("BM", 128.0),
            ("BN", 128.0),
            ("BK", 16.0),
            ("TM", 8.0),
            ("TN", 8.0),
            ("ACT", 3.0),
        ],
        &[
            ("BM", 128.0),
            ("BN", 64.0),
            ("BK", 8.0),
            ("TM", 8.0),
            ("TN", 4.0),
            ("ACT", 2.0),
        ],
    ],
    pieces: &[
        &pieces::MATMUL_PARAMS,
        &pieces::ACTIVATION,
        &pieces::MATMUL_BATCH_OFFSETS,
    ],
    swaps: &[],
    params: Some(&MatmulParams::LAYOUT),
};

/// Split-K reduction plus epilogue.
pub(crate) static MATMUL_REDUCE: KernelSource = KernelSource {
    name: "matmul_reduce",
    source: kernel_file!("matmul_reduce"),
    entry_points: &["main"],
    tensors: &[
        TensorBinding::read("partial"),
        TensorBinding::read("bias"),
        TensorBinding::write("c"),
    ],
    mixed_dtypes: true,
    enables: &[],
    specialisations: &[&[], &[("HAS_BIAS", 1.0), ("ACT", 3.0)]],
    pieces: &[
        &pieces::MATMUL_PARAMS,
        &pieces::ACTIVATION,
        &pieces::MATMUL_BATCH_OFFSETS,
    ],
    swaps: &[],
    params: Some(&MatmulParams::LAYOUT),
};

/// How the tiled kernel divides K: `splits` workgroups per output tile, each owning
/// `k_chunk` of K.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KSplit {
    pub(crate) splits: usize,
    pub(crate) k_chunk: usize,
}

impl KSplit {
    pub(crate) fn none(plan: &MatmulPlan) -> Self {
        KSplit {
            splits: 1,
            k_chunk: plan.k,
        }
    }
}

/// K splits for the tiled kernel: more than one only when the output has fewer tiles
/// than the device wants workgroups and K is long enough to share (≥ 8 K-tiles per
/// split). `force` asks for at least two where K allows it. Splits are whole BK tiles
/// (every split but the last is full), and none where the f32 partial sums would not
/// fit one binding. On a loop-limited driver (llvmpipe, see `gpu::driver_quirks`) no
/// chunk is longer than [`LOOP_LIMITED_K_CHUNK`], and partial sums that would not fit are
/// an error rather than one long, silently truncated walk. `describe` and the launcher
/// both use this, so they agree.
pub(crate) fn split_k(
    g: &GpuContext,
    plan: &MatmulPlan,
    tile: &TileConfig,
    info: &crate::DeviceInfo,
    force: bool,
) -> Result<KSplit> {
    let tiles =
        plan.m.div_ceil(tile.bm as usize) * plan.n.div_ceil(tile.bn as usize) * plan.batch();
    let bk = tile.bk as usize;
    let k_tiles = plan.k.div_ceil(bk);
    let max_by_k = (k_tiles / 8).max(1);
    let want = target_groups(info).div_ceil(tiles.max(1));
    let want = if force { want.max(2) } else { want };
    let splits = want.min(max_by_k).clamp(1, 64);
    let mut k_chunk = (plan.k.div_ceil(splits).div_ceil(bk) * bk).max(1);
    let limited = g.loop_limited() && plan.k > LOOP_LIMITED_K_CHUNK;
    if limited {
        k_chunk = k_chunk.min(LOOP_LIMITED_K_CHUNK / bk * bk).max(bk);
    }
    let splits = plan.k.div_ceil(k_chunk).max(1);
    let workspace_bytes = (splits * plan.batch() * plan.m * plan.n * 4) as u64;
    if limited {
        g.check_binding(
            || {
                format!(
                    "the split-K partial sums of matmul (K = {} in chunks of {k_chunk} on {})",
                    plan.k, info.name
                )
            },
            workspace_bytes,
        )?;
    } else if splits == 1 || workspace_bytes > g.binding_limit() {
        return Ok(KSplit::none(plan));
    }
    Ok(KSplit { splits, k_chunk })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn tiled(
    g: &GpuContext,
    plan: &MatmulPlan,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    tile: &TileConfig,
    split: KSplit,
) -> Result<()> {
    let mut params = MatmulParams::new(plan);
    let tiles_m = plan.m.div_ceil(tile.bm as usize);
    let tiles_n = plan.n.div_ceil(tile.bn as usize);
    let KSplit { splits, k_chunk } = split;
    let total = (tiles_m * tiles_n * plan.batch() * splits) as u64;
    if total > u32::MAX as u64 {
        return Err(Error::shape(
            "matmul",
            format!("{total} workgroups exceed one dispatch; split the batch"),
        ));
    }
    params.tiles_m = tiles_m as u32;
    params.tiles_n = tiles_n as u32;
    params.splits = splits as u32;
    params.k_chunk = k_chunk as u32;
    params.total_groups = total as u32;
    let a_kcontig = plan.sak == 1;
    let b_ncontig = plan.sbn == 1;
    let vec2_a = pairs_aligned(
        if a_kcontig { plan.sam } else { plan.sak },
        &plan.a_batch_strides,
    );
    let vec2_b = pairs_aligned(
        if b_ncontig { plan.sbk } else { plan.sbn },
        &plan.b_batch_strides,
    );
    let (bias_buf, bias_dt) = bias_binding(bias, a);
    let mut constants = vec![
        ("BM", tile.bm as f64),
        ("BN", tile.bn as f64),
        ("BK", tile.bk as f64),
        ("TM", tile.tm as f64),
        ("TN", tile.tn as f64),
        ("A_KCONTIG", flag(a_kcontig)),
        ("B_NCONTIG", flag(b_ncontig)),
        ("VEC2_A", flag(vec2_a)),
        ("VEC2_B", flag(vec2_b)),
    ];
    let groups = fold_groups(total as u32);
    if splits == 1 {
        constants.extend(epilogue_constants(bias, plan.activation));
        let pipeline = g.pipeline(
            &MATMUL_TILED,
            "main",
            ShaderHeader::new(vec![plan.in_dtype, plan.in_dtype, bias_dt, plan.out_dtype]),
            &constants,
        )?;
        return g.dispatch(
            &pipeline,
            "matmul tiled",
            &[a.gpu_buffer(), b.gpu_buffer(), bias_buf, out.gpu_buffer()],
            Some(bytemuck::bytes_of(&params)),
            groups,
        );
    }
    // Split K: partial sums into an f32 workspace, then one reduce + epilogue pass.
    let workspace = g.alloc((splits * plan.batch() * plan.m * plan.n * 4) as u64)?;
    let pipeline = g.pipeline(
        &MATMUL_TILED,
        "main",
        ShaderHeader::new(vec![
            plan.in_dtype,
            plan.in_dtype,
            plan.in_dtype,
            DType::F32,
        ]),
        &constants,
    )?;
    g.dispatch(
        &pipeline,
        "matmul splitk",
        &[
            a.gpu_buffer(),
            b.gpu_buffer(),
            a.gpu_buffer(),
            workspace.buffer().as_entire_buffer_binding(),
        ],
        Some(bytemuck::bytes_of(&params)),
        groups,
    )?;
    let reduce = g.pipeline(
        &MATMUL_REDUCE,
        "main",
        ShaderHeader::new(vec![DType::F32, bias_dt, plan.out_dtype]),
        &epilogue_constants(bias, plan.activation),
    )?;
    let outputs = (plan.batch() * plan.m * plan.n) as u32;
    g.dispatch(
        &reduce,
        "matmul splitk reduce",
        &[
            workspace.buffer().as_entire_buffer_binding(),
            bias_buf,
            out.gpu_buffer(),
        ],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(outputs.div_ceil(2 * 256)),
    )
    // `workspace` returns to the pool on drop; the pool hands it out again only to
    // work recorded later in the same stream, which runs after these passes.
}
