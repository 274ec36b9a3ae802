//! Launchers for the matmul kernels (`shaders/matmul_*.wgsl`), one file per kernel
//! family, and the choice between them as a value, [`MatmulLaunch`].
//!
//! Selection for [`MatmulKernel::Auto`]:
//! 1. M ≤ 8 → GEMV (bandwidth-bound; the subgroup-reduction variant where the adapter
//!    has SUBGROUP and B is read along K).
//! 2. f16 inputs on an adapter reporting a 16×16×16 or 8×8×8 f16→f32 cooperative-matrix
//!    configuration (plus SUBGROUP and SHADER_F16) → the cooperative-matrix kernel of
//!    that tile, 16×16 where both are reported ([`coop::coop_tile`]).
//! 3. Otherwise the tiled GEMM, with the tile configuration from the adapter's tuning
//!    cache (see `autotune`) or a heuristic default, and split K when the output has too
//!    few tiles to fill the device while K is long.

mod coop;
mod gemv;
mod naive;
mod subgroup;
mod tiled;

use super::driver_quirks::{LOOP_LIMITED_K_CHUNK, LOOP_LIMITED_SUBGROUP_K};
use crate::autotune::{self, ShapeClass, TileConfig};
use crate::dtype::DType;
use crate::error::{Error, Result};
pub(crate) use crate::gpu::fixed_subgroup_size;
use crate::gpu::shader::{uniform_params, KernelSource, TensorBinding};
use crate::gpu::GpuContext;
use crate::ops::activation::Activation;
use crate::ops::matmul::{MatmulKernel, MatmulPlan};
use crate::shape::{pad_rank, MAX_RANK};
use crate::tensor::Tensor;
use tiled::{split_k, KSplit};

pub use coop::{coop_tile, CoopTile};
pub(crate) use coop::{MATMUL_COOP, MATMUL_COOP8};
pub(crate) use gemv::{MATMUL_GEMV, MATMUL_GEMV_SUBGROUP};
pub(crate) use naive::MATMUL_NAIVE;
pub(crate) use subgroup::MATMUL_SUBGROUP;
pub(crate) use tiled::{MATMUL_REDUCE, MATMUL_TILED};

const AB_BIAS_C: &[TensorBinding] = &[
    TensorBinding::read("a"),
    TensorBinding::read("b"),
    TensorBinding::read("bias"),
    TensorBinding::write("c"),
];

/// Every matmul kernel family. `MATMUL_GEMV_SUBGROUP` needs SUBGROUP and `MATMUL_COOP`
/// needs cooperative matrices, f16 and subgroups on the adapter.
pub(crate) static KERNELS: &[&KernelSource] = &[
    &MATMUL_TILED,
    &MATMUL_SUBGROUP,
    &MATMUL_NAIVE,
    &MATMUL_REDUCE,
    &MATMUL_GEMV,
    &MATMUL_GEMV_SUBGROUP,
    &MATMUL_COOP,
    &MATMUL_COOP8,
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

pub(crate) fn flag(b: bool) -> f64 {
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

/// The cooperative-matrix tile this adapter's report allows ([`coop_tile`]), on a device
/// opened with cooperative matrices.
pub(crate) fn coop_tile_on(g: &GpuContext, info: &crate::DeviceInfo) -> Option<CoopTile> {
    if !g
        .features
        .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
    {
        return None;
    }
    coop_tile(&info.features).ok().map(|(tile, _)| tile)
}

/// Whether this adapter can run the cooperative-matrix kernel of `tile` (a forced
/// `Coop16x16` / `Coop8x8`, also where the adapter would prefer the other).
fn coop_tile_offered(g: &GpuContext, info: &crate::DeviceInfo, tile: CoopTile) -> bool {
    coop_tile_on(g, info).is_some()
        && info
            .features
            .cooperative_matrix
            .iter()
            .any(|c| tile.matches(c))
}

fn missing(op: &'static str, feature: &'static str, device: &str) -> Error {
    Error::MissingFeature {
        op,
        feature,
        device: device.to_string(),
        hint: "use MatmulKernel::Auto, which picks a kernel this adapter can run",
    }
}

/// What one matmul call runs: the kernel and everything that sizes its launch. Selected
/// once by [`select`]; [`describe`] is its text and [`matmul`] runs exactly it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MatmulLaunch {
    /// One output per invocation.
    Naive,
    /// The GEMV kernels (M ≤ 8), with subgroup reductions or shared memory.
    Gemv {
        /// The subgroup-reduction form (B read along K).
        subgroup: bool,
    },
    /// The tiled GEMM with its tile and K split.
    Tiled {
        /// Block and register tile.
        tile: TileConfig,
        /// How K is divided across workgroups (one split: no reduction pass).
        split: KSplit,
    },
    /// The subgroup GEMM at the adapter's fixed subgroup size.
    Subgroup {
        /// Lanes per subgroup.
        sg: u32,
    },
    /// The cooperative-matrix GEMM of one tile size.
    Coop {
        /// 16×16 or 8×8.
        tile: CoopTile,
    },
}

impl std::fmt::Display for MatmulLaunch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MatmulLaunch::Naive => f.write_str("naive"),
            MatmulLaunch::Gemv { subgroup: false } => f.write_str("gemv"),
            MatmulLaunch::Gemv { subgroup: true } => f.write_str("gemv-subgroup"),
            MatmulLaunch::Tiled { tile, split } if split.splits > 1 => {
                write!(f, "tiled {tile} split-k {}", split.splits)
            }
            MatmulLaunch::Tiled { tile, .. } => write!(f, "tiled {tile}"),
            MatmulLaunch::Subgroup { .. } => f.write_str("subgroup"),
            MatmulLaunch::Coop { tile } => write!(f, "coop {tile}"),
        }
    }
}

/// The launch for `plan` on this adapter: `Auto` chosen by shape, tuning and features; a
/// forced kernel checked against what the adapter offers (a typed error where it cannot
/// run, so `describe` fails exactly where the call would).
pub(crate) fn select(
    g: &GpuContext,
    info: &crate::DeviceInfo,
    plan: &MatmulPlan,
) -> Result<MatmulLaunch> {
    let kernel = match plan.kernel {
        MatmulKernel::Auto => choose(g, info, plan),
        k => k,
    };
    // llvmpipe ends loops after 65,535 iterations per invocation (gpu::driver_quirks):
    // a long K runs as the tiled kernel split into chunks (GEMV takes 8 elements of K per
    // iteration and stays well inside the budget at any K that fits a binding).
    let k_limit = match kernel {
        MatmulKernel::Naive => LOOP_LIMITED_K_CHUNK,
        _ => LOOP_LIMITED_SUBGROUP_K,
    };
    let kernel = match kernel {
        MatmulKernel::Naive | MatmulKernel::Subgroup if g.loop_limited() && plan.k > k_limit => {
            if plan.kernel != MatmulKernel::Auto {
                return Err(Error::shape(
                    "matmul",
                    format!(
                        "on {} the {} kernel takes K ≤ {k_limit} (the driver stops shader loops after 65,535 iterations) but K = {}; use MatmulKernel::Auto, Tiled or SplitK",
                        info.name,
                        kernel.name(),
                        plan.k
                    ),
                ));
            }
            MatmulKernel::Auto
        }
        k => k,
    };
    Ok(match kernel {
        MatmulKernel::Naive => MatmulLaunch::Naive,
        MatmulKernel::Subgroup => {
            let Some(sg) = fixed_subgroup_size(g, info) else {
                return Err(missing(
                    "matmul (Subgroup)",
                    "SUBGROUP with a fixed subgroup size",
                    &info.name,
                ));
            };
            MatmulLaunch::Subgroup { sg }
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
            let subgroup = kernel == MatmulKernel::GemvSubgroup;
            if subgroup && fixed_subgroup_size(g, info).is_none() {
                return Err(missing(
                    "matmul (GemvSubgroup)",
                    "SUBGROUP with a fixed subgroup size",
                    &info.name,
                ));
            }
            if subgroup && plan.sbk != 1 {
                return Err(Error::shape(
                    "matmul",
                    "the subgroup GEMV reads B along K: pass B transposed (trans_b, the [out, in] layout) or use MatmulKernel::Gemv",
                ));
            }
            MatmulLaunch::Gemv { subgroup }
        }
        MatmulKernel::Coop | MatmulKernel::Coop16x16 | MatmulKernel::Coop8x8 => {
            // the adapter's tile, or the one forced where the adapter reports it
            let tile = match kernel {
                MatmulKernel::Coop16x16 => {
                    Some(CoopTile::X16).filter(|&t| coop_tile_offered(g, info, t))
                }
                MatmulKernel::Coop8x8 => {
                    Some(CoopTile::X8).filter(|&t| coop_tile_offered(g, info, t))
                }
                _ => coop_tile_on(g, info),
            };
            let Some(tile) = tile else {
                return Err(missing(
                    match kernel {
                        MatmulKernel::Coop16x16 => "matmul (Coop16x16)",
                        MatmulKernel::Coop8x8 => "matmul (Coop8x8)",
                        _ => "matmul (Coop)",
                    },
                    match kernel {
                        MatmulKernel::Coop16x16 => "EXPERIMENTAL_COOPERATIVE_MATRIX with a 16x16x16 f16->f32 configuration, SUBGROUP and SHADER_F16",
                        MatmulKernel::Coop8x8 => "EXPERIMENTAL_COOPERATIVE_MATRIX with an 8x8x8 f16->f32 configuration, SUBGROUP and SHADER_F16",
                        _ => "EXPERIMENTAL_COOPERATIVE_MATRIX with a 16x16x16 or 8x8x8 f16->f32 configuration, SUBGROUP and SHADER_F16",
                    },
                    &info.name,
                ));
            };
            if plan.in_dtype != DType::F16 {
                return Err(Error::Argument {
                    op: "matmul",
                    name: "kernel",
                    value: format!("Coop with {} inputs", plan.in_dtype),
                    expected: "Coop takes f16 inputs; cast them to f16 or use MatmulKernel::Auto",
                });
            }
            MatmulLaunch::Coop { tile }
        }
        MatmulKernel::Tiled | MatmulKernel::SplitK | MatmulKernel::Auto => {
            let tile = autotune::tile_for(g, info, plan.in_dtype, ShapeClass::of(plan));
            // a forced Tiled runs unsplit, except where the driver's loop budget
            // makes split_k cap the chunk
            let split = match kernel {
                MatmulKernel::Tiled if !(g.loop_limited() && plan.k > LOOP_LIMITED_K_CHUNK) => {
                    KSplit::none(plan)
                }
                k => split_k(g, plan, &tile, info, k == MatmulKernel::SplitK)?,
            };
            MatmulLaunch::Tiled { tile, split }
        }
    })
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
    let launch = select(g, info, plan)?;
    let result = match launch {
        MatmulLaunch::Naive => naive::naive(g, plan, a, b, bias, out),
        MatmulLaunch::Gemv { subgroup } => gemv::gemv(g, plan, a, b, bias, out, subgroup),
        MatmulLaunch::Tiled { tile, split } => tiled::tiled(g, plan, a, b, bias, out, &tile, split),
        MatmulLaunch::Subgroup { sg } => subgroup::subgroup_gemm(g, plan, a, b, bias, out, sg),
        MatmulLaunch::Coop { tile } => coop::coop(g, plan, a, b, bias, out, tile),
    };
    match result {
        // Cooperative matrices are experimental in wgpu and drivers: where Auto chose them
        // and the pipeline does not build, note it, stop choosing them on this device and
        // select again (the error says why when the kernel is forced).
        Err(Error::ShaderBuild { message, .. })
            if matches!(launch, MatmulLaunch::Coop { .. }) && plan.kernel == MatmulKernel::Auto =>
        {
            g.coop_broken
                .store(true, std::sync::atomic::Ordering::Relaxed);
            g.note(format!(
                "the cooperative-matrix matmul failed to build; Auto uses the other kernels: {message}"
            ));
            matmul(g, plan, a, b, bias, out)
        }
        r => r,
    }
}

/// What `matmul` runs for `plan`: the selected launch's text.
pub(crate) fn describe(
    g: &GpuContext,
    info: &crate::DeviceInfo,
    plan: &MatmulPlan,
) -> Result<String> {
    select(g, info, plan).map(|l| l.to_string())
}

/// The kernel `Auto` runs for `plan` on this adapter.
fn choose(g: &GpuContext, info: &crate::DeviceInfo, plan: &MatmulPlan) -> MatmulKernel {
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
        && coop_tile_on(g, info).is_some()
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

/// Binds `bias` or, without one, any buffer (HAS_BIAS false: never read).
fn bias_binding<'t>(bias: Option<&'t Tensor>, a: &'t Tensor) -> (wgpu::BufferBinding<'t>, DType) {
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
