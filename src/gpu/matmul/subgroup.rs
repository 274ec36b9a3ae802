//! The barrier-free subgroup GEMM (`shaders/matmul_subgroup.wgsl`): A shared through
//! subgroup shuffles, on adapters with SUBGROUP and a fixed subgroup size.

use super::{bias_binding, epilogue_constants, flag, pairs_aligned, MatmulParams, AB_BIAS_C};
use crate::dtype::DType;
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

/// Columns per lane of the subgroup GEMM (the accumulators are vec4s over them).
const SUBGROUP_TN: u32 = 4;

/// Rows per subgroup (TM) and subgroups per workgroup (WGS) for an M-row product: M cut
/// into the fewest chunks of at most `most` (24 or 32) rows, each rounded up to a multiple of 8 (so TM
/// is 8, 16, 24 or 32: few pipelines, and 72 rows run as three tiles of 24, not two of
/// 64), with two subgroups per workgroup once M is large. Tall tiles pay on adapters
/// where a load costs many FMAs (see the kernel's header). On lavapipe at 1024³ f32,
/// GFLOP/s in one run: TM 8 (the old tile, 4 subgroups) 2.9, 16: 4.6, 32: 5.8 (one
/// subgroup per workgroup) and 6.6 (two); past 32 Mesa's NIR stops unrolling the row
/// loops and it drops to 2.
fn subgroup_rows(m: usize, most: usize) -> (u32, u32) {
    let chunks = m.div_ceil(most).max(1);
    let tm = m.div_ceil(chunks).next_multiple_of(8).clamp(8, most) as u32;
    let wgs = if m >= 256 { 2 } else { 1 };
    (tm, wgs)
}

pub(super) fn subgroup_gemm(
    g: &GpuContext,
    plan: &MatmulPlan,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    sg: u32,
) -> Result<()> {
    let tn = SUBGROUP_TN;
    // Shuffles beat per-lane broadcast loads of A on every adapter measured so far
    // (lavapipe: 8 vs 4 GFLOP/s at 1024³); A_SHUFFLE = false stays for adapters where
    // shuffles are slow.
    let shuffle = true;
    // Word pairs where they halve the loads (16-bit operands) and are word-aligned.
    let half = plan.in_dtype != DType::F32;
    let a_pairs = half && plan.sak == 1 && pairs_aligned(plan.sam, &plan.a_batch_strides);
    let b_pairs_k = half
        && plan.sbk == 1
        && plan.k.is_multiple_of(2)
        && pairs_aligned(plan.sbn, &plan.b_batch_strides);
    let b_pairs_n = half
        && plan.sbn == 1
        && plan.n.is_multiple_of(2)
        && pairs_aligned(plan.sbk, &plan.b_batch_strides);
    // Pairs along K double the row loop's body: past 24 rows Mesa leaves it rolled
    // (lavapipe f16 96×384×1536: 3.2 GFLOP/s at 32 rows, 7.2 at 24).
    let (tm, wgs) = subgroup_rows(plan.m, if b_pairs_k { 24 } else { 32 });
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
            ("A_PAIRS", flag(a_pairs)),
            ("B_PAIRS_K", flag(b_pairs_k)),
            ("B_PAIRS_N", flag(b_pairs_n)),
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
