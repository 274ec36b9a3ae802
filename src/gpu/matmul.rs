//! Launchers for the matmul kernels (`shaders/matmul_*.wgsl`) and the choice between
//! them.
//!
//! Selection for [`MatmulKernel::Auto`]:
//! 1. M ≤ 8 → GEMV (bandwidth-bound; the subgroup-reduction variant where the adapter
//!    has SUBGROUP and B is read along K).
//! 2. f16 inputs on an adapter reporting a 16×16×16 f16→f32 cooperative-matrix
//!    configuration (plus SUBGROUP and SHADER_F16) → the cooperative-matrix kernel.
//! 3. Otherwise the tiled GEMM, with the tile configuration from the adapter's tuning
//!    cache (see `autotune`) or a heuristic default, and split K when the output has too
//!    few tiles to fill the device while K is long.

use super::autotune::{self, ShapeClass, TileConfig};
use super::shader::{
    kernel_file, pieces, uniform_params, KernelSource, ShaderHeader, TensorBinding,
};
use super::{fold_groups, GpuContext};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::activation::Activation;
use crate::ops::matmul::{MatmulKernel, MatmulPlan};
use crate::shape::{pad_rank, MAX_RANK};
use crate::tensor::Tensor;

const AB_BIAS_C: &[TensorBinding] = &[
    TensorBinding::read("a"),
    TensorBinding::read("b"),
    TensorBinding::read("bias"),
    TensorBinding::write("c"),
];

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

/// Barrier-free subgroup GEMM (SUBGROUP with a fixed subgroup size).
pub(crate) static MATMUL_SUBGROUP: KernelSource = KernelSource {
    name: "matmul_subgroup",
    source: kernel_file!("matmul_subgroup"),
    entry_points: &["main"],
    tensors: AB_BIAS_C,
    mixed_dtypes: true,
    enables: &[],
    specialisations: &[
        &[],
        &[
            ("SG", 8.0),
            ("TM", 4.0),
            ("TN", 2.0),
            ("WGS", 4.0),
            ("HAS_BIAS", 1.0),
            ("ACT", 3.0),
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

/// One output per invocation, no tiling: the baseline of the speed-up ratio.
pub(crate) static MATMUL_NAIVE: KernelSource = KernelSource {
    name: "matmul_naive",
    source: kernel_file!("matmul_naive"),
    entry_points: &["main"],
    tensors: AB_BIAS_C,
    mixed_dtypes: true,
    enables: &[],
    specialisations: &[&[], &[("HAS_BIAS", 1.0), ("ACT", 1.0)]],
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

/// GEMV for M ≤ 8, B read along K (`gemv_k`) or along N (`gemv_n`).
pub(crate) static MATMUL_GEMV: KernelSource = KernelSource {
    name: "matmul_gemv",
    source: kernel_file!("matmul_gemv"),
    entry_points: &["gemv_k", "gemv_n"],
    tensors: AB_BIAS_C,
    mixed_dtypes: true,
    enables: &[],
    specialisations: &[
        &[],
        &[
            ("MR", 8.0),
            ("TEAM", 8.0),
            ("VEC2_A", 1.0),
            ("VEC2_B", 1.0),
            ("HAS_BIAS", 1.0),
            ("ACT", 1.0),
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

/// `gemv_k` with subgroup reductions (SUBGROUP).
pub(crate) static MATMUL_GEMV_SUBGROUP: KernelSource = KernelSource {
    name: "matmul_gemv_subgroup",
    source: kernel_file!("matmul_gemv_subgroup"),
    entry_points: &["gemv_k"],
    tensors: AB_BIAS_C,
    mixed_dtypes: true,
    enables: &[],
    specialisations: &[
        &[],
        &[("MR", 4.0), ("SG", 8.0), ("VEC2_A", 1.0), ("VEC2_B", 1.0)],
    ],
    pieces: &[
        &pieces::MATMUL_PARAMS,
        &pieces::ACTIVATION,
        &pieces::MATMUL_BATCH_OFFSETS,
    ],
    swaps: &[],
    params: Some(&MatmulParams::LAYOUT),
};

/// Cooperative-matrix GEMM (f16 in, f32 accumulate; EXPERIMENTAL_COOPERATIVE_MATRIX,
/// SUBGROUP, SHADER_F16). Its `a` and `b` bindings (2, 3) are plain `array<f16>`; the
/// header covers only `bias` and `c`.
pub(crate) static MATMUL_COOP: KernelSource = KernelSource {
    name: "matmul_coop",
    source: kernel_file!("matmul_coop"),
    entry_points: &["main"],
    tensors: &[TensorBinding::read("bias"), TensorBinding::write("c")],
    mixed_dtypes: true,
    enables: &[],
    specialisations: &[
        &[],
        &[
            ("WG", 128.0),
            ("STEP", 4.0),
            ("HAS_BIAS", 1.0),
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

/// Every matmul kernel family, for the shader portability test (naga parse, validate,
/// translate). `MATMUL_GEMV_SUBGROUP` needs SUBGROUP and `MATMUL_COOP` needs
/// cooperative matrices, f16 and subgroups on the adapter.
#[cfg_attr(not(test), allow(dead_code))] // read by the shader portability test
pub(crate) static KERNELS: &[&KernelSource] = &[
    &MATMUL_TILED,
    &MATMUL_SUBGROUP,
    &MATMUL_NAIVE,
    &MATMUL_REDUCE,
    &MATMUL_GEMV,
    &MATMUL_GEMV_SUBGROUP,
    &MATMUL_COOP,
];

uniform_params! {
    /// Mirrors `Params` in every matmul_*.wgsl.
    pub(crate) struct MatmulParams {
        m: u32,
        n: u32,
        k: u32,
        batch: u32,
        sam: u32,
        sak: u32,
        sbk: u32,
        sbn: u32,
        tiles_m: u32,
        tiles_n: u32,
        splits: u32,
        k_chunk: u32,
        batch_rank: u32,
        total_groups: u32,
        _pad: [u32; 2],
        batch_shape: [u32; MAX_RANK],
        a_bstride: [u32; MAX_RANK],
        b_bstride: [u32; MAX_RANK],
    }
}

/// Rows of A the GEMV kernels take (their accumulators are a fixed register array).
pub(crate) const GEMV_MAX_M: usize = 8;
/// Workgroup size of `gemv_k`.
const GEMV_WG: u32 = 128;
/// Invocations per output column in the shared-memory `gemv_k`.
const GEMV_TEAM: u32 = 32;

impl MatmulParams {
    fn new(p: &MatmulPlan) -> Self {
        MatmulParams {
            m: p.m as u32,
            n: p.n as u32,
            k: p.k as u32,
            batch: p.batch() as u32,
            sam: p.sam as u32,
            sak: p.sak as u32,
            sbk: p.sbk as u32,
            sbn: p.sbn as u32,
            tiles_m: 1,
            tiles_n: 1,
            splits: 1,
            k_chunk: p.k as u32,
            batch_rank: p.batch_shape.len() as u32,
            total_groups: 0,
            _pad: [0; 2],
            batch_shape: pad_rank(&p.batch_shape),
            a_bstride: pad_rank(&p.a_batch_strides),
            b_bstride: pad_rank(&p.b_batch_strides),
        }
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Environment switch: `OPENKERN_COOP=0` keeps `Auto` off the cooperative-matrix kernel.
pub const COOP_ENV: &str = "OPENKERN_COOP";

/// `OPENKERN_COOP`, read once per process rather than on every matmul.
static COOP_ENABLED: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var(COOP_ENV).map_or(true, |v| v != "0"));

/// Whether a 16×16×16 f16→f32 cooperative-matrix configuration (and what the coop kernel
/// needs besides) is on this adapter.
pub(crate) fn coop_available(g: &GpuContext, info: &crate::DeviceInfo) -> bool {
    g.features
        .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        && g.features.contains(wgpu::Features::SUBGROUP)
        && g.features.contains(wgpu::Features::SHADER_F16)
        && info
            .features
            .cooperative_matrix
            .iter()
            .any(|c| c.m == 16 && c.n == 16 && c.k == 16 && c.ab == "f16" && c.cr == "f32")
}

fn missing(op: &'static str, feature: &'static str, device: &str) -> Error {
    Error::MissingFeature {
        op,
        feature,
        device: device.to_string(),
        hint: "use MatmulKernel::Auto, which picks a kernel this adapter can run",
    }
}

/// The adapter's subgroup size where it has SUBGROUP and the size cannot vary.
pub(crate) fn fixed_subgroup_size(g: &GpuContext, info: &crate::DeviceInfo) -> Option<u32> {
    let f = &info.features;
    (g.features.contains(wgpu::Features::SUBGROUP)
        && f.subgroup_min_size == f.subgroup_max_size
        && (4..=128).contains(&f.subgroup_max_size))
    .then_some(f.subgroup_max_size)
}

/// Runs `plan` on the GPU into `out` (already allocated, non-empty).
pub(crate) fn matmul(
    g: &GpuContext,
    plan: &MatmulPlan,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    let info = a.device().info();
    let kernel = match plan.kernel {
        MatmulKernel::Auto => choose(g, info, plan),
        k => k,
    };
    match kernel {
        MatmulKernel::Naive => naive(g, plan, a, b, bias, out),
        MatmulKernel::Subgroup => {
            let Some(sg) = fixed_subgroup_size(g, info) else {
                return Err(missing(
                    "matmul (Subgroup)",
                    "SUBGROUP with a fixed subgroup size",
                    &info.name,
                ));
            };
            subgroup_gemm(g, plan, a, b, bias, out, sg)
        }
        MatmulKernel::Gemv | MatmulKernel::GemvSubgroup => {
            if plan.m > GEMV_MAX_M {
                return Err(Error::shape(
                    "matmul",
                    format!(
                        "the GEMV kernel takes M ≤ {GEMV_MAX_M} but M = {}; use MatmulKernel::Auto or Tiled",
                        plan.m
                    ),
                ));
            }
            let use_subgroup = kernel == MatmulKernel::GemvSubgroup;
            if use_subgroup && fixed_subgroup_size(g, info).is_none() {
                return Err(missing(
                    "matmul (GemvSubgroup)",
                    "SUBGROUP with a fixed subgroup size",
                    &info.name,
                ));
            }
            if use_subgroup && plan.sbk != 1 {
                return Err(Error::shape(
                    "matmul",
                    "the subgroup GEMV reads B along K: pass B transposed (trans_b, the [out, in] layout) or use MatmulKernel::Gemv",
                ));
            }
            gemv(g, plan, a, b, bias, out, use_subgroup)
        }
        MatmulKernel::Coop => {
            if !coop_available(g, info) {
                return Err(missing(
                    "matmul (Coop)",
                    "EXPERIMENTAL_COOPERATIVE_MATRIX with a 16x16x16 f16->f32 configuration, SUBGROUP and SHADER_F16",
                    &info.name,
                ));
            }
            if plan.in_dtype != DType::F16 {
                return Err(Error::Argument {
                    op: "matmul",
                    name: "kernel",
                    value: format!("Coop with {} inputs", plan.in_dtype),
                    expected: "Coop takes f16 inputs; cast them to f16 or use MatmulKernel::Auto",
                });
            }
            match coop(g, plan, a, b, bias, out) {
                // Cooperative matrices are experimental in wgpu and drivers: where Auto
                // chose them and the pipeline does not build, fall back to the general
                // kernels (the error says why when the kernel is forced).
                Err(Error::ShaderBuild { message, .. }) if plan.kernel == MatmulKernel::Auto => {
                    g.coop_broken
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    eprintln!("openkern: cooperative-matrix matmul failed to build on {}, using the tiled kernel: {message}", info.name);
                    let fallback = MatmulPlan {
                        kernel: MatmulKernel::Tiled,
                        ..plan.clone()
                    };
                    matmul(g, &fallback, a, b, bias, out)
                }
                r => r,
            }
        }
        MatmulKernel::Tiled | MatmulKernel::SplitK | MatmulKernel::Auto => {
            let class = ShapeClass::of(plan);
            let tile = autotune::tile_for(g, info, plan.in_dtype, class);
            let split = match kernel {
                MatmulKernel::Tiled => KSplit::none(plan),
                k => split_k(g, plan, &tile, info, k == MatmulKernel::SplitK),
            };
            tiled(g, plan, a, b, bias, out, &tile, split)
        }
    }
}

/// What `matmul` runs for `plan`: kernel, tile configuration and K splits.
pub(crate) fn describe(g: &GpuContext, info: &crate::DeviceInfo, plan: &MatmulPlan) -> String {
    let kernel = match plan.kernel {
        MatmulKernel::Auto => choose(g, info, plan),
        k => k,
    };
    match kernel {
        MatmulKernel::Tiled | MatmulKernel::SplitK | MatmulKernel::Auto => {
            let tile = autotune::tile_for(g, info, plan.in_dtype, ShapeClass::of(plan));
            let splits = match kernel {
                MatmulKernel::Tiled => 1,
                k => split_k(g, plan, &tile, info, k == MatmulKernel::SplitK).splits,
            };
            if splits > 1 {
                format!("tiled {tile} split-k {splits}")
            } else {
                format!("tiled {tile}")
            }
        }
        k => k.name().to_string(),
    }
}

/// The kernel `Auto` runs for `plan` on this adapter.
pub(crate) fn choose(g: &GpuContext, info: &crate::DeviceInfo, plan: &MatmulPlan) -> MatmulKernel {
    // A skinny product (few outputs, long K) cannot fill the device one column per
    // team: the tiled kernel with split K spreads K over workgroups instead.
    let skinny = plan.n * plan.batch() < target_groups(info) && plan.k >= 2048;
    if plan.m <= GEMV_MAX_M && !skinny {
        if plan.sbk == 1 && fixed_subgroup_size(g, info).is_some() {
            return MatmulKernel::GemvSubgroup;
        }
        return MatmulKernel::Gemv;
    }
    let coop_allowed = *COOP_ENABLED && !g.coop_broken.load(std::sync::atomic::Ordering::Relaxed);
    if plan.in_dtype == DType::F16
        && plan.n >= 16
        && plan.k >= 16
        && coop_allowed
        && coop_available(g, info)
    {
        return MatmulKernel::Coop;
    }
    if skinny {
        return MatmulKernel::Auto; // the tiled kernel, which splits K
    }
    match autotune::choice_for(g, info, plan.in_dtype, ShapeClass::of(plan)) {
        autotune::Choice::Subgroup => MatmulKernel::Subgroup,
        autotune::Choice::Tiled(_) => MatmulKernel::Auto,
    }
}

/// Workgroups that keep the device busy: a few per compute unit on a real GPU, a few
/// per thread on a software one.
fn target_groups(info: &crate::DeviceInfo) -> usize {
    match info.device_type {
        crate::DeviceType::SoftwareGpu | crate::DeviceType::Cpu => 8,
        _ => 264,
    }
}

/// How the tiled kernel divides K: `splits` workgroups per output tile, each owning
/// `k_chunk` of K.
#[derive(Debug, Clone, Copy)]
struct KSplit {
    splits: usize,
    k_chunk: usize,
}

impl KSplit {
    fn none(plan: &MatmulPlan) -> Self {
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
/// fit one binding. `describe` and the launcher both use this, so they agree.
fn split_k(
    g: &GpuContext,
    plan: &MatmulPlan,
    tile: &TileConfig,
    info: &crate::DeviceInfo,
    force: bool,
) -> KSplit {
    let tiles =
        plan.m.div_ceil(tile.bm as usize) * plan.n.div_ceil(tile.bn as usize) * plan.batch();
    let bk = tile.bk as usize;
    let k_tiles = plan.k.div_ceil(bk);
    let max_by_k = (k_tiles / 8).max(1);
    let want = target_groups(info).div_ceil(tiles.max(1));
    let want = if force { want.max(2) } else { want };
    let splits = want.min(max_by_k).clamp(1, 64);
    let k_chunk = (plan.k.div_ceil(splits).div_ceil(bk) * bk).max(1);
    let splits = plan.k.div_ceil(k_chunk).max(1);
    let workspace_bytes = (splits * plan.batch() * plan.m * plan.n * 4) as u64;
    if splits == 1 || workspace_bytes > g.binding_limit() {
        return KSplit::none(plan);
    }
    KSplit { splits, k_chunk }
}

/// Binds `bias` or, without one, any buffer (HAS_BIAS false: never read).
fn bias_binding<'t>(bias: Option<&'t Tensor>, a: &'t Tensor) -> (&'t wgpu::Buffer, DType) {
    match bias {
        Some(t) => (t.gpu_buffer(), t.dtype()),
        None => (a.gpu_buffer(), a.dtype()),
    }
}

/// The epilogue's override constants: `ACT` is the activation's code (0 for none).
fn epilogue_constants(bias: Option<&Tensor>, act: Option<Activation>) -> [(&'static str, f64); 2] {
    let code = act.map_or(0, Activation::code);
    [("HAS_BIAS", flag(bias.is_some())), ("ACT", f64::from(code))]
}

/// Whether word pairs along an operand's contiguous dimension are word-aligned: the
/// other dimension's stride and every batch offset even.
fn pairs_aligned(other_stride: usize, batch_strides: &[usize]) -> bool {
    other_stride.is_multiple_of(2) && batch_strides.iter().all(|s| s.is_multiple_of(2))
}

fn naive(
    g: &GpuContext,
    plan: &MatmulPlan,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    let (bias_buf, bias_dt) = bias_binding(bias, a);
    let pipeline = g.pipeline(
        &MATMUL_NAIVE,
        "main",
        ShaderHeader::new(vec![plan.in_dtype, plan.in_dtype, bias_dt, plan.out_dtype]),
        &epilogue_constants(bias, plan.activation),
    )?;
    let params = MatmulParams::new(plan);
    let total = (plan.batch() * plan.m * plan.n) as u32;
    g.dispatch(
        &pipeline,
        "matmul naive",
        &[a.gpu_buffer(), b.gpu_buffer(), bias_buf, out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(total.div_ceil(256)),
    )
}

fn gemv(
    g: &GpuContext,
    plan: &MatmulPlan,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    subgroup: bool,
) -> Result<()> {
    let (bias_buf, bias_dt) = bias_binding(bias, a);
    let header = ShaderHeader::new(vec![plan.in_dtype, plan.in_dtype, bias_dt, plan.out_dtype]);
    let k_contig = plan.sbk == 1;
    let vec2_a = plan.sak == 1 && pairs_aligned(plan.sam, &plan.a_batch_strides);
    let [has_bias, act] = epilogue_constants(bias, plan.activation);
    let params = MatmulParams::new(plan);
    let batch = plan.batch() as u32;
    let subgroup_size = if subgroup {
        fixed_subgroup_size(g, a.device().info())
    } else {
        None
    };
    let (kernel, entry, vec2_b, groups) = if k_contig {
        let per_column = subgroup_size.unwrap_or(GEMV_TEAM).min(GEMV_WG);
        (
            if subgroup {
                &MATMUL_GEMV_SUBGROUP
            } else {
                &MATMUL_GEMV
            },
            "gemv_k",
            pairs_aligned(plan.sbn, &plan.b_batch_strides),
            (plan.n as u32).div_ceil(GEMV_WG / per_column) * batch,
        )
    } else if plan.sbn == 1 {
        (
            &MATMUL_GEMV,
            "gemv_n",
            pairs_aligned(plan.sbk, &plan.b_batch_strides),
            (plan.n as u32).div_ceil(64) * batch,
        )
    } else {
        // B with neither stride 1 does not occur (strides come from contiguous operands).
        return Err(Error::shape(
            "matmul",
            "internal: B has no unit stride; please report this",
        ));
    };
    let mut constants = vec![
        ("MR", plan.m as f64),
        ("VEC2_A", flag(vec2_a)),
        ("VEC2_B", flag(vec2_b)),
        has_bias,
        act,
    ];
    if entry == "gemv_k" {
        constants.push(("WG", GEMV_WG as f64));
        constants.push(match subgroup_size {
            Some(sg) => ("SG", sg as f64),
            None => ("TEAM", GEMV_TEAM as f64),
        });
    }
    let pipeline = g.pipeline(kernel, entry, header, &constants)?;
    g.dispatch(
        &pipeline,
        "matmul gemv",
        &[a.gpu_buffer(), b.gpu_buffer(), bias_buf, out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(groups),
    )
}

#[allow(clippy::too_many_arguments)]
fn tiled(
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
    let workspace = g.alloc((splits * plan.batch() * plan.m * plan.n * 4) as u64);
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
            workspace.buffer(),
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
        &[workspace.buffer(), bias_buf, out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(outputs.div_ceil(2 * 256)),
    )
    // `workspace` returns to the pool on drop; the pool hands it out again only to
    // work recorded later in the same stream, which runs after these passes.
}

/// Rows per subgroup (≤ 8), columns per lane (≤ 4) and subgroups per workgroup of the
/// subgroup GEMM. Measured on lavapipe at 1024³ f32 (GFLOP/s): (8,4,4) 8.0–8.8,
/// (8,4,2) 6.5, (8,2,4) 7.9, (4,4,4) 5.2.
const SUBGROUP_TILE: (u32, u32, u32) = (8, 4, 4);

fn subgroup_gemm(
    g: &GpuContext,
    plan: &MatmulPlan,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    sg: u32,
) -> Result<()> {
    let (tm, tn, wgs) = SUBGROUP_TILE;
    // Shuffles beat per-lane broadcast loads of A on every adapter measured so far
    // (lavapipe: 8 vs 4 GFLOP/s at 1024³); A_SHUFFLE = false stays for adapters where
    // shuffles are slow.
    let shuffle = true;
    let mut params = MatmulParams::new(plan);
    let tiles_m = plan.m.div_ceil((tm * wgs) as usize);
    let tiles_n = plan.n.div_ceil((tn * sg) as usize);
    let total = tiles_m * tiles_n * plan.batch();
    params.tiles_m = tiles_m as u32;
    params.tiles_n = tiles_n as u32;
    params.total_groups = total as u32;
    let (bias_buf, bias_dt) = bias_binding(bias, a);
    let [has_bias, act] = epilogue_constants(bias, plan.activation);
    let pipeline = g.pipeline(
        &MATMUL_SUBGROUP,
        "main",
        ShaderHeader::new(vec![plan.in_dtype, plan.in_dtype, bias_dt, plan.out_dtype]),
        &[
            ("SG", sg as f64),
            ("TM", tm as f64),
            ("TN", tn as f64),
            ("WGS", wgs as f64),
            ("A_SHUFFLE", flag(shuffle)),
            has_bias,
            act,
        ],
    )?;
    g.dispatch(
        &pipeline,
        "matmul subgroup",
        &[a.gpu_buffer(), b.gpu_buffer(), bias_buf, out.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(total as u32),
    )
}

fn coop(
    g: &GpuContext,
    plan: &MatmulPlan,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    let info = a.device().info();
    // 4×2 quadrants (128×64 blocks) once the output is tall enough to use them.
    let (sgm, sgn) = if plan.m >= 128 && plan.n >= 64 {
        (4u32, 2u32)
    } else {
        (2, 2)
    };
    let quads = sgm * sgn;
    let mut params = MatmulParams::new(plan);
    let tiles_m = plan.m.div_ceil(32 * sgm as usize);
    let tiles_n = plan.n.div_ceil(32 * sgn as usize);
    let total = tiles_m * tiles_n * plan.batch();
    params.tiles_m = tiles_m as u32;
    params.tiles_n = tiles_n as u32;
    params.total_groups = total as u32;
    // One subgroup per quadrant where the subgroup size is fixed (32 on NVIDIA);
    // otherwise 128 invocations and the kernel does its quadrants in passes.
    let (wg, step) = match fixed_subgroup_size(g, info) {
        Some(sg) if quads * sg <= g.limits.max_compute_invocations_per_workgroup => {
            (quads * sg, quads)
        }
        _ => (128, 1),
    };
    let (bias_buf, bias_dt) = bias_binding(bias, a);
    let [has_bias, act] = epilogue_constants(bias, plan.activation);
    let pipeline = g.pipeline(
        &MATMUL_COOP,
        "main",
        ShaderHeader::new(vec![bias_dt, plan.out_dtype]),
        &[
            ("WG", wg as f64),
            ("STEP", step as f64),
            ("SGM", sgm as f64),
            ("SGN", sgn as f64),
            has_bias,
            act,
        ],
    )?;
    g.dispatch(
        &pipeline,
        "matmul coop",
        &[bias_buf, out.gpu_buffer(), a.gpu_buffer(), b.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(total as u32),
    )
}
