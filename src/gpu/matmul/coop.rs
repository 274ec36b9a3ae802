//! The cooperative-matrix GEMMs: f16 tiles through `coop_mat16x16`
//! (`shaders/matmul_coop.wgsl`; tensor cores on NVIDIA and AMD through
//! VK_KHR_cooperative_matrix) or `coop_mat8x8` (`shaders/matmul_coop8.wgsl`; Apple GPUs
//! through Metal's simdgroup matrices), and the choice between them from what the adapter
//! reports ([`coop_tile`]).

use super::{bias_binding, epilogue_constants, fixed_subgroup_size, MatmulParams};
use crate::device::{CoopMatrixConfig, DeviceFeatures};
use crate::error::Result;
use crate::gpu::shader::{kernel_file, pieces, KernelSource, ShaderHeader, TensorBinding};
use crate::gpu::{fold_groups, GpuContext};
use crate::ops::matmul::MatmulPlan;
use crate::tensor::Tensor;

/// The side of the square cooperative-matrix tiles a matmul kernel multiplies: WGSL
/// offers `coop_mat16x16` and `coop_mat8x8` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoopTile {
    /// 16×16×16 tiles (NVIDIA and AMD through Vulkan): `shaders/matmul_coop.wgsl`.
    X16,
    /// 8×8×8 tiles (Apple GPUs through Metal): `shaders/matmul_coop8.wgsl`.
    X8,
}

impl CoopTile {
    /// The tile side in elements.
    pub fn side(self) -> u32 {
        match self {
            CoopTile::X16 => 16,
            CoopTile::X8 => 8,
        }
    }

    /// Whether `config` is this tile's f16×f16→f32 configuration, the one the kernels use.
    pub fn matches(self, config: &CoopMatrixConfig) -> bool {
        let s = self.side();
        config.m == s && config.n == s && config.k == s && config.ab == "f16" && config.cr == "f32"
    }
}

impl std::fmt::Display for CoopTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.side();
        write!(f, "{s}x{s}")
    }
}

/// Which cooperative-matrix kernel an adapter with `features` can run, and why: the
/// 16×16 one where it reports a 16×16×16 f16→f32 configuration, else the 8×8 one where
/// it reports 8×8×8 f16→f32, else none. Both kernels also need SUBGROUP and SHADER_F16.
/// Only the configurations decide (a pure function of the report, so it is tested on
/// made-up lists); `OPENKERN_COOP=0` and a kernel that failed to build are applied on
/// top by the matmul's kernel choice. `Err` says why there is none.
pub fn coop_tile(features: &DeviceFeatures) -> std::result::Result<(CoopTile, String), String> {
    let configs = &features.cooperative_matrix;
    if configs.is_empty() {
        return Err("the adapter reports no cooperative-matrix configuration".into());
    }
    let listed = configs
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let Some(tile) = [CoopTile::X16, CoopTile::X8]
        .into_iter()
        .find(|t| configs.iter().any(|c| t.matches(c)))
    else {
        return Err(format!(
            "none of its cooperative-matrix configurations ({listed}) is 16x16x16 or 8x8x8 f16->f32"
        ));
    };
    let lacking: Vec<&str> = [
        (!features.subgroup).then_some("SUBGROUP"),
        (!features.shader_f16).then_some("SHADER_F16"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !lacking.is_empty() {
        return Err(format!(
            "it reports {tile}x{} f16->f32 but lacks {}",
            tile.side(),
            lacking.join(" and ")
        ));
    }
    Ok((
        tile,
        format!(
            "the adapter reports {tile}x{} f16->f32 (of {listed})",
            tile.side()
        ),
    ))
}

/// The 16×16 cooperative-matrix GEMM (f16 in, f32 accumulate; EXPERIMENTAL_COOPERATIVE_MATRIX,
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
        &[("WG", 256.0), ("STEP", 8.0), ("SGM", 4.0), ("SGN", 2.0)],
    ],
    pieces: &[
        &pieces::MATMUL_PARAMS,
        &pieces::ACTIVATION,
        &pieces::MATMUL_BATCH_OFFSETS,
        &pieces::MATMUL_COOP_EMIT,
    ],
    swaps: &[],
    params: Some(&MatmulParams::LAYOUT),
};

/// The 8×8 cooperative-matrix GEMM, the same bindings and needs as [`MATMUL_COOP`]; it
/// deals its quadrants to the subgroups the workgroup really has, so it needs no fixed
/// subgroup size (Metal reports 4..64).
pub(crate) static MATMUL_COOP8: KernelSource = KernelSource {
    name: "matmul_coop8",
    source: kernel_file!("matmul_coop8"),
    entry_points: &["main"],
    tensors: &[TensorBinding::read("bias"), TensorBinding::write("c")],
    mixed_dtypes: true,
    enables: &[],
    specialisations: &[
        &[],
        &[("WG", 128.0), ("HAS_BIAS", 1.0), ("ACT", 2.0)],
        &[("WG", 512.0), ("SGM", 4.0), ("SGN", 4.0), ("ACT", 3.0)],
    ],
    pieces: &[
        &pieces::MATMUL_PARAMS,
        &pieces::ACTIVATION,
        &pieces::MATMUL_BATCH_OFFSETS,
        &pieces::MATMUL_COOP_EMIT,
    ],
    swaps: &[],
    params: Some(&MatmulParams::LAYOUT),
};

/// Runs `plan` through the cooperative-matrix kernel of `tile`.
pub(super) fn coop(
    g: &GpuContext,
    plan: &MatmulPlan,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    tile: CoopTile,
) -> Result<()> {
    let info = a.device().info();
    let fixed = fixed_subgroup_size(g, info);
    let max_wg = g.limits.max_compute_invocations_per_workgroup;
    // (quadrants along M, along N, quadrant side, workgroup size, constants of the tile)
    let (sgm, sgn, side, wg, kernel, step) = match tile {
        CoopTile::X16 => {
            // 4×2 quadrants (128×64 blocks) once the output is tall enough to use them.
            let (sgm, sgn) = if plan.m >= 128 && plan.n >= 64 {
                (4u32, 2u32)
            } else {
                (2, 2)
            };
            // One subgroup per quadrant where the subgroup size is fixed (32 on NVIDIA);
            // otherwise 128 invocations and the kernel does its quadrants in passes.
            let (wg, step) = match fixed {
                Some(sg) if sgm * sgn * sg <= max_wg => (sgm * sgn * sg, sgm * sgn),
                _ => (128, 1),
            };
            (sgm, sgn, 32u32, wg, &MATMUL_COOP, Some(step))
        }
        CoopTile::X8 => {
            // One subgroup per quadrant at the fixed size, or at 32 lanes (Apple GPUs)
            // where the adapter reports a range; the kernel deals its quadrants to the
            // subgroups the workgroup really has, so a wrong guess costs passes, not
            // correctness. 4×4 quadrants (64×64 blocks) where the output has them.
            let lanes = fixed.unwrap_or(32);
            let (sgm, sgn) = if plan.m >= 64 && plan.n >= 64 && 16 * lanes <= max_wg {
                (4u32, 4u32)
            } else {
                (2, 2)
            };
            let wg = if sgm * sgn * lanes <= max_wg {
                sgm * sgn * lanes
            } else {
                128
            };
            (sgm, sgn, 16u32, wg, &MATMUL_COOP8, None)
        }
    };
    let mut params = MatmulParams::new(plan);
    let tiles_m = plan.m.div_ceil((side * sgm) as usize);
    let tiles_n = plan.n.div_ceil((side * sgn) as usize);
    let total = tiles_m * tiles_n * plan.batch();
    params.tiles_m = tiles_m as u32;
    params.tiles_n = tiles_n as u32;
    params.total_groups = total as u32;
    let (bias_buf, bias_dt) = bias_binding(bias, a);
    let [has_bias, act] = epilogue_constants(bias, plan.activation);
    let mut constants = vec![
        ("WG", wg as f64),
        ("SGM", sgm as f64),
        ("SGN", sgn as f64),
        has_bias,
        act,
    ];
    if let Some(step) = step {
        constants.push(("STEP", step as f64));
    }
    let pipeline = g.pipeline(
        kernel,
        "main",
        ShaderHeader::new(vec![bias_dt, plan.out_dtype]),
        &constants,
    )?;
    g.dispatch(
        &pipeline,
        match tile {
            CoopTile::X16 => "matmul coop 16x16",
            CoopTile::X8 => "matmul coop 8x8",
        },
        &[bias_buf, out.gpu_buffer(), a.gpu_buffer(), b.gpu_buffer()],
        Some(bytemuck::bytes_of(&params)),
        fold_groups(total as u32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(side: u32, ab: &'static str, cr: &'static str) -> CoopMatrixConfig {
        CoopMatrixConfig {
            m: side,
            n: side,
            k: side,
            ab,
            cr,
        }
    }

    fn features(configs: Vec<CoopMatrixConfig>) -> DeviceFeatures {
        DeviceFeatures {
            shader_f16: true,
            subgroup: true,
            subgroup_min_size: 32,
            subgroup_max_size: 32,
            timestamp_query: true,
            cooperative_matrix: configs,
        }
    }

    /// What wgpu's Metal backend reports on Apple GPUs (wgpu-hal metal/adapter.rs).
    fn metal_like() -> DeviceFeatures {
        DeviceFeatures {
            subgroup_min_size: 4,
            subgroup_max_size: 64,
            ..features(vec![
                config(8, "f32", "f32"),
                config(8, "f16", "f16"),
                config(8, "f16", "f32"),
            ])
        }
    }

    /// The shape of an NVIDIA report through VK_KHR_cooperative_matrix (subgroup scope).
    fn nvidia_like() -> DeviceFeatures {
        features(vec![
            config(16, "f16", "f16"),
            config(16, "f16", "f32"),
            config(16, "u32", "u32"),
        ])
    }

    #[test]
    fn metal_like_reports_choose_the_8x8_kernel() {
        let (tile, why) = coop_tile(&metal_like()).unwrap();
        assert_eq!(tile, CoopTile::X8);
        assert!(why.contains("8x8x8 f16->f32"), "{why}");
        assert_eq!(tile.to_string(), "8x8");
    }

    #[test]
    fn nvidia_like_reports_choose_the_16x16_kernel() {
        let (tile, why) = coop_tile(&nvidia_like()).unwrap();
        assert_eq!(tile, CoopTile::X16);
        assert!(why.contains("16x16x16 f16->f32"), "{why}");
    }

    #[test]
    fn both_sizes_prefer_16x16() {
        let mut f = metal_like();
        f.cooperative_matrix
            .extend(nvidia_like().cooperative_matrix);
        assert_eq!(coop_tile(&f).unwrap().0, CoopTile::X16);
    }

    #[test]
    fn no_usable_configuration_means_no_coop_kernel() {
        // lavapipe and most adapters: nothing reported
        let why = coop_tile(&features(Vec::new())).unwrap_err();
        assert!(why.contains("no cooperative-matrix"), "{why}");
        // 8×8 only with an f16 accumulator, or f32 inputs: the kernels accumulate f16
        // products in f32
        for configs in [
            vec![config(8, "f16", "f16")],
            vec![config(8, "f32", "f32"), config(16, "f32", "f32")],
        ] {
            let why = coop_tile(&features(configs)).unwrap_err();
            assert!(why.contains("f16->f32"), "{why}");
        }
        // non-square tiles (16×8×16 and the like) are not WGSL types
        let odd = CoopMatrixConfig {
            m: 16,
            n: 8,
            k: 16,
            ab: "f16",
            cr: "f32",
        };
        assert!(coop_tile(&features(vec![odd])).is_err());
    }

    #[test]
    fn the_kernels_need_subgroups_and_f16_too() {
        let mut f = metal_like();
        f.shader_f16 = false;
        let why = coop_tile(&f).unwrap_err();
        assert!(why.contains("SHADER_F16") && why.contains("8x8x8"), "{why}");
        let mut f = nvidia_like();
        f.subgroup = false;
        let why = coop_tile(&f).unwrap_err();
        assert!(
            why.contains("SUBGROUP") && !why.contains("SHADER_F16"),
            "{why}"
        );
    }
}
