//! The cooperative-matrix GEMM (`shaders/matmul_coop.wgsl`): f16 tiles through
//! `coop_mat16x16` (tensor cores on NVIDIA through VK_KHR_cooperative_matrix).

use super::{bias_binding, epilogue_constants, fixed_subgroup_size, MatmulParams};
use crate::error::Result;
use crate::gpu::shader::{kernel_file, pieces, KernelSource, ShaderHeader, TensorBinding};
use crate::gpu::{fold_groups, GpuContext};
use crate::ops::matmul::MatmulPlan;
use crate::tensor::Tensor;

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

pub(super) fn coop(
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
