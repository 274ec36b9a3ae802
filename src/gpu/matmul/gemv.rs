//! GEMV for M ≤ 8 (`shaders/matmul_gemv.wgsl`, `matmul_gemv_subgroup.wgsl`): token
//! decode is bandwidth-bound, so each workgroup streams a block of B's columns once.

use super::{
    bias_binding, epilogue_constants, fixed_subgroup_size, flag, pairs_aligned, MatmulParams,
    AB_BIAS_C,
};
use crate::error::{Error, Result};
use crate::gpu::shader::{kernel_file, octets_fit, pieces, KernelSource, ShaderHeader};
use crate::gpu::{fold_groups, GpuContext};
use crate::ops::matmul::MatmulPlan;
use crate::tensor::Tensor;

/// Workgroup size of `gemv_k`.
const GEMV_WG: u32 = 128;
/// Invocations per output column in the shared-memory `gemv_k`.
const GEMV_TEAM: u32 = 32;
/// Output columns per subgroup of the subgroup GEMV's `gemv_k`: each lane's pairs of A
/// serve this many weight rows from registers. On a GPU, 4 (lavapipe, 1×4096×4096, one
/// run: f32 132 ms with 1 column, 101 ms with 2, 83 ms with 4; f16 76, 59, 47 ms); 8
/// would leave a GPU with too few workgroups at N = 4096 (32 columns per workgroup at
/// subgroup size 32: 128 workgroups for 132 SMs). A software adapter runs a handful of
/// workgroups at a time and pays for every load of A as for a weight load (a per-lane
/// loop), so it takes 8: lavapipe, 1×4096×4096, fastest call of 60, alternating, two
/// runs: f16 11.1–11.3 → 10.0–10.2 ms, f32 17.4–17.6 → 16.0–16.1 ms (16 columns gained
/// another 3–5 %).
fn gemv_subgroup_columns(info: &crate::DeviceInfo) -> u32 {
    match info.device_type {
        crate::DeviceType::SoftwareGpu => 8,
        _ => 4,
    }
}

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
        &pieces::GEMV_PAIRS,
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
        &[
            ("MR", 1.0),
            ("SG", 8.0),
            ("COLS", 8.0),
            ("OCTETS_B", 1.0),
            ("OCTETS_A", 1.0),
        ],
        &[
            ("MR", 8.0),
            ("SG", 32.0),
            ("COLS", 8.0),
            ("HAS_BIAS", 1.0),
            ("ACT", 2.0),
        ],
    ],
    pieces: &[
        &pieces::MATMUL_PARAMS,
        &pieces::ACTIVATION,
        &pieces::MATMUL_BATCH_OFFSETS,
        &pieces::GEMV_PAIRS,
    ],
    swaps: &[],
    params: Some(&MatmulParams::LAYOUT),
};

pub(super) fn gemv(
    g: &GpuContext,
    plan: &MatmulPlan,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    subgroup: bool,
) -> Result<()> {
    let (bias_buf, bias_dt) = bias_binding(bias, a);
    let mut header = ShaderHeader::new(vec![plan.in_dtype, plan.in_dtype, bias_dt, plan.out_dtype]);
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
    // output columns per subgroup (one per team of the shared-memory kernel)
    let columns = subgroup_size.map_or(1, |_| gemv_subgroup_columns(a.device().info()));
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
            (plan.n as u32).div_ceil(GEMV_WG / per_column * columns) * batch,
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
        return Err(Error::Internal {
            message: "matmul: B has no unit stride".into(),
        });
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
        match subgroup_size {
            Some(sg) => {
                constants.push(("SG", sg as f64));
                constants.push(("COLS", columns as f64));
                // runs of eight along K: K, the row strides and batch offsets multiples
                // of eight elements
                let strides = |other: usize, batch: &[usize]| {
                    [plan.k, other]
                        .into_iter()
                        .chain(batch.iter().copied())
                        .collect::<Vec<_>>()
                };
                let octets = octets_fit(b, strides(plan.sbn, &plan.b_batch_strides));
                if octets {
                    header = header.with_quads(1);
                }
                constants.push(("OCTETS_B", flag(octets)));
                let octets_a = octets
                    && plan.sak == 1
                    && octets_fit(a, strides(plan.sam, &plan.a_batch_strides));
                if octets_a {
                    header = header.with_quads(0);
                }
                constants.push(("OCTETS_A", flag(octets_a)));
            }
            None => constants.push(("TEAM", GEMV_TEAM as f64)),
        }
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
