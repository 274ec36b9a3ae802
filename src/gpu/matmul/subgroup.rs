//! The barrier-free subgroup GEMM (`shaders/matmul_subgroup.wgsl`): A shared through
//! subgroup shuffles, on adapters with SUBGROUP and a fixed subgroup size.

use super::{bias_binding, epilogue_constants, flag, MatmulParams, AB_BIAS_C};
use crate::error::Result;
use crate::gpu::shader::{kernel_file, pieces, KernelSource, ShaderHeader};
use crate::gpu::{fold_groups, GpuContext};
use crate::ops::matmul::MatmulPlan;
use crate::tensor::Tensor;

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

/// Rows per subgroup (≤ 8), columns per lane (≤ 4) and subgroups per workgroup of the
/// subgroup GEMM. Measured on lavapipe at 1024³ f32 (GFLOP/s): (8,4,4) 8.0–8.8,
/// (8,4,2) 6.5, (8,2,4) 7.9, (4,4,4) 5.2.
const SUBGROUP_TILE: (u32, u32, u32) = (8, 4, 4);

pub(super) fn subgroup_gemm(
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
