//! Matrix multiplication: batched `matmul` with broadcast batch dimensions and transposed
//! operands, and `linear` (x·Wᵀ + bias, then an activation) in the layout inference
//! engines use. Inputs are f32, f16 or bf16 (both operands the same); products accumulate
//! in f32; the output dtype is the caller's choice (the input dtype by default).
//!
//! ```
//! use openkern::{ops, Device, Tensor};
//! # fn main() -> openkern::Result<()> {
//! let device = Device::cpu();
//! let a = Tensor::from_slice(&device, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
//! let b = Tensor::from_slice(&device, &[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
//! let c = ops::matmul(&a, &b)?;
//! assert_eq!(c.to_vec::<f32>()?, vec![4.0, 5.0, 10.0, 11.0]);
//! # Ok(())
//! # }
//! ```

use super::dispatch;
use crate::device::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::activation::Activation;
use crate::shape::{broadcast_shapes, broadcast_strides, check_rank};
use crate::tensor::Tensor;

pub use crate::gpu::matmul::{coop_tile, CoopTile};

/// Which GPU kernel runs a matmul. `Auto` picks per adapter and shape; the others force
/// one (for tests and benchmarks) and fail with a typed error where it cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum MatmulKernel {
    /// Chosen per adapter and shape (tuned configuration where a tuning cache exists).
    #[default]
    Auto,
    /// One output element per invocation, no tiling: the reference for speed-up ratios.
    Naive,
    /// Shared-memory tiled, register-blocked, double-buffered GEMM.
    Tiled,
    /// The tiled GEMM with K split across workgroups and a reduction pass.
    SplitK,
    /// Barrier-free GEMM that shares A through subgroup shuffles (adapters with SUBGROUP
    /// and a fixed subgroup size).
    Subgroup,
    /// Bandwidth-bound matrix-vector kernel for M ≤ 8 (token decode).
    Gemv,
    /// The GEMV kernel with subgroup reductions (adapters with SUBGROUP).
    GemvSubgroup,
    /// Cooperative-matrix (tensor-core) GEMM for f16 inputs, on adapters reporting a
    /// 16×16×16 or 8×8×8 f16→f32 configuration: the 16×16 kernel where both are
    /// reported (see [`coop_tile`]).
    Coop,
    /// The 16×16 cooperative-matrix GEMM, on adapters reporting 16×16×16 f16→f32
    /// (NVIDIA and AMD through Vulkan).
    Coop16x16,
    /// The 8×8 cooperative-matrix GEMM, on adapters reporting 8×8×8 f16→f32 (Apple GPUs
    /// through Metal).
    Coop8x8,
}

impl MatmulKernel {
    /// The kernel's name in benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            MatmulKernel::Auto => "auto",
            MatmulKernel::Naive => "naive",
            MatmulKernel::Tiled => "tiled",
            MatmulKernel::SplitK => "splitk",
            MatmulKernel::Subgroup => "subgroup",
            MatmulKernel::Gemv => "gemv",
            MatmulKernel::GemvSubgroup => "gemv-subgroup",
            MatmulKernel::Coop => "coop",
            MatmulKernel::Coop16x16 => "coop16x16",
            MatmulKernel::Coop8x8 => "coop8x8",
        }
    }
}

/// Options of [`matmul_with`]. `Default` is a plain `a · b` in the input dtype.
#[derive(Debug, Clone, Default)]
pub struct MatmulOptions {
    /// Read `a` as transposed: its last two dimensions are `[K, M]` instead of `[M, K]`.
    pub trans_a: bool,
    /// Read `b` as transposed: its last two dimensions are `[N, K]` instead of `[K, N]`
    /// (the `[out, in]` weight layout).
    pub trans_b: bool,
    /// Output dtype; `None` keeps the input dtype. Accumulation is f32 either way.
    pub out_dtype: Option<DType>,
    /// A bias of shape `[N]` (f32 or the operands' dtype) added to every output row
    /// before the activation.
    pub bias: Option<Tensor>,
    /// Activation applied last, in the kernel's epilogue: GELU (both forms), SiLU or
    /// ReLU. [`Activation::SwiGlu`] takes two inputs and is refused here; run two
    /// linears and [`crate::ops::swiglu`] (or one linear with the gate and up weights
    /// stacked, then `swiglu` on the two halves that [`crate::ops::chunk`] cuts along
    /// the last dimension: one copy pass per half, see [`crate::ops::layout`]).
    pub activation: Option<Activation>,
    /// Which GPU kernel to use (ignored on the CPU device).
    pub kernel: MatmulKernel,
}

/// `a · b` over the last two dimensions, broadcasting the leading (batch) dimensions.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_with(a, b, &MatmulOptions::default())
}

/// `x · wᵀ + bias`, then `activation`: a linear layer with weights `[out, in]`.
/// `x` is `[..., in]` (any number of leading dimensions); the result is `[..., out]` in
/// `x`'s dtype. Bias and activation run in the matmul kernel's epilogue.
///
/// On the CPU backend a weight (any rank-2 second operand, also of [`matmul_with`]) is
/// read in the form its kernel wants, made on first use and cached: for more than 8
/// rows of `x`, f32 column panels (where the CPU has AVX2 and FMA; elsewhere the f32
/// copy of a 16-bit weight), so a 16-bit weight is widened once, not on every call; for
/// up to 8 rows (token decode) the weight is read as stored and nothing is cached. An
/// entry is keyed by the weight's storage (held weakly, so the cache never keeps a
/// tensor alive), the element range the tensor covers in it (views such as the halves
/// of a stacked gate-up weight are separate entries) and the layout read; it is freed
/// when the weight drops (swept on the next lookup), when the cache's 1 GiB bound
/// evicts it (least recently used first), or by [`crate::Device::trim_pool`]. A cached
/// f32 weight costs its size again in host memory.
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    activation: Option<Activation>,
) -> Result<Tensor> {
    const OP: &str = "linear";
    if w.rank() != 2 {
        return Err(Error::shape(
            OP,
            format!(
                "weight has shape {:?}; it must be [out_features, in_features]",
                w.shape()
            ),
        ));
    }
    if x.rank() == 0 {
        return Err(Error::shape(
            OP,
            "input is a scalar; give it at least one dimension [in_features]",
        ));
    }
    // Fold the leading dimensions into M: one GEMM, not a batch of GEMVs.
    let lead = &x.shape()[..x.rank() - 1];
    let rows: usize = lead.iter().product();
    let x2 = x.reshape(&[rows, x.shape()[x.rank() - 1]])?;
    let y = matmul_op(
        OP,
        &x2,
        w,
        &MatmulOptions {
            trans_b: true,
            bias: bias.cloned(),
            activation,
            ..Default::default()
        },
    )?;
    let mut out_shape = lead.to_vec();
    out_shape.push(w.shape()[0]);
    y.reshape(&out_shape)
}

/// `a · b` with the options given: transposed operands, output dtype, fused bias and
/// activation, forced kernel.
pub fn matmul_with(a: &Tensor, b: &Tensor, options: &MatmulOptions) -> Result<Tensor> {
    matmul_op("matmul", a, b, options)
}

/// A checked matmul problem: everything a backend needs to run it.
#[derive(Debug, Clone)]
pub(crate) struct MatmulPlan {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Output batch dimensions (broadcast of both operands').
    pub batch_shape: Vec<usize>,
    /// Element strides of each operand's batch dimensions over `batch_shape` (0 where
    /// broadcast).
    pub a_batch_strides: Vec<usize>,
    pub b_batch_strides: Vec<usize>,
    /// Element strides of A's (m, k) and B's (k, n) within one matrix.
    pub sam: usize,
    pub sak: usize,
    pub sbk: usize,
    pub sbn: usize,
    pub in_dtype: DType,
    pub out_dtype: DType,
    pub activation: Option<Activation>,
    pub kernel: MatmulKernel,
}

impl MatmulPlan {
    /// Number of matrices in the batch.
    pub fn batch(&self) -> usize {
        self.batch_shape.iter().product()
    }
}

/// Refuses dtypes matmul has no kernel for (u32 index tensors, later quantized ones).
fn check_float(op: &'static str, dtype: DType, supported: &'static str) -> Result<()> {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => Ok(()),
        other => Err(Error::UnsupportedDType {
            op,
            dtype: other,
            supported,
        }),
    }
}

fn make_plan(op: &'static str, a: &Tensor, b: &Tensor, o: &MatmulOptions) -> Result<MatmulPlan> {
    dispatch::same_device_and_dtype(op, a, [b])?;
    dispatch::same_device(op, a, o.bias.as_ref())?;
    check_float(op, a.dtype(), "f32, f16 or bf16 operands; cast them first")?;
    let out_dtype = o.out_dtype.unwrap_or(a.dtype());
    check_float(op, out_dtype, "f32, f16 or bf16 outputs")?;
    if let Some(bias) = &o.bias {
        check_float(op, bias.dtype(), "an f32, f16 or bf16 bias; cast it first")?;
        if bias.dtype() != a.dtype() && bias.dtype() != DType::F32 {
            return Err(Error::ParamDType {
                op,
                param: "bias",
                dtype: bias.dtype(),
                activation: a.dtype(),
            });
        }
    }
    if o.activation == Some(Activation::SwiGlu) {
        return Err(Error::Argument {
            op,
            name: "activation",
            value: "SwiGlu".into(),
            expected: "the epilogue applies one-input activations (Gelu, GeluTanh, Silu, Relu); for SwiGLU run the gate and up projections, then ops::swiglu(gate, up)",
        });
    }
    for (name, t) in [("first", a), ("second", b)] {
        if t.rank() < 2 {
            return Err(Error::shape(
                op,
                format!(
                    "the {name} operand has shape {:?}; matmul needs rank ≥ 2 (reshape a vector of length L to [1, L] or [L, 1])",
                    t.shape()
                ),
            ));
        }
        check_rank(op, t.shape())?;
    }
    let (ra, rb) = (a.rank(), b.rank());
    let (am, ak) = (a.shape()[ra - 2], a.shape()[ra - 1]);
    let (m, k) = if o.trans_a { (ak, am) } else { (am, ak) };
    let (bk, bn) = (b.shape()[rb - 2], b.shape()[rb - 1]);
    let (kb, n) = if o.trans_b { (bn, bk) } else { (bk, bn) };
    if k != kb {
        return Err(Error::InnerDimMismatch {
            op,
            lhs: a.shape().to_vec(),
            trans_a: o.trans_a,
            k_lhs: k,
            rhs: b.shape().to_vec(),
            trans_b: o.trans_b,
            k_rhs: kb,
        });
    }
    if let Some(bias) = &o.bias {
        if bias.shape() != [n] {
            return Err(Error::LastDimMismatch {
                op,
                name: "bias",
                shape: bias.shape().to_vec(),
                expected: n,
            });
        }
    }
    let batch_shape = broadcast_shapes(op, &a.shape()[..ra - 2], &b.shape()[..rb - 2])?;
    let a_batch_strides = broadcast_strides(&a.shape()[..ra - 2], &batch_shape)
        .into_iter()
        .map(|s| s * am * ak)
        .collect();
    let b_batch_strides = broadcast_strides(&b.shape()[..rb - 2], &batch_shape)
        .into_iter()
        .map(|s| s * bk * bn)
        .collect();
    // Element (m, k) of A sits at m·sam + k·sak; element (k, n) of B at k·sbk + n·sbn.
    let (sam, sak) = if o.trans_a { (1, m) } else { (k, 1) };
    let (sbk, sbn) = if o.trans_b { (1, k) } else { (n, 1) };
    let plan = MatmulPlan {
        m,
        n,
        k,
        batch_shape,
        a_batch_strides,
        b_batch_strides,
        sam,
        sak,
        sbk,
        sbn,
        in_dtype: a.dtype(),
        out_dtype,
        activation: o.activation,
        kernel: o.kernel,
    };
    Ok(plan)
}

/// Which kernel (and tile configuration) `matmul_with(a, b, options)` would run, e.g.
/// `"tiled 64x64x16/8x8"`, `"tiled 32x64x16/4x4 split-k 4"`, `"gemv-subgroup"`,
/// `"coop 16x16"`, `"coop 8x8"`, or `"cpu gemm"`. For benchmark tables and logs; checks like the op does, so a kernel
/// this adapter cannot run is the same typed error here as in the call.
pub fn describe(a: &Tensor, b: &Tensor, options: &MatmulOptions) -> Result<String> {
    let plan = make_plan("matmul", a, b, options)?;
    match &a.device().inner.backend {
        Backend::Gpu(g) => crate::gpu::matmul::describe(g, a.device().info(), &plan),
        Backend::Cpu => Ok("cpu gemm".to_string()),
    }
}

fn matmul_op(op: &'static str, a: &Tensor, b: &Tensor, o: &MatmulOptions) -> Result<Tensor> {
    let plan = make_plan(op, a, b, o)?;
    let mut out_shape = plan.batch_shape.clone();
    out_shape.extend([plan.m, plan.n]);
    let out_dtype = plan.out_dtype;
    dispatch::run1(
        op,
        &[Some(a), Some(b), o.bias.as_ref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        &out_shape,
        out_dtype,
        |g, out| crate::gpu::matmul::matmul(g, &plan, a, b, o.bias.as_ref(), out),
        || {
            Ok(crate::cpu::matmul::matmul(
                &plan,
                a.cpu_storage(),
                b.cpu_storage(),
                // a rank-2 second operand is a weight: its widened copy is cached
                (b.rank() == 2).then(|| (&b.storage, b.offset..b.offset + b.len())),
                o.bias.as_ref().map(|t| t.cpu_storage()),
            ))
        },
    )
}
