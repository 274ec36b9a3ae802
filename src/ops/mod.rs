//! The public op API. Each op checks shapes, dtypes and devices, then dispatches to the
//! GPU launcher in `gpu/` or the CPU twin in `cpu/`. One file per op family.

use crate::gpu::shader::KernelSource;

pub mod activation;
pub mod attention;
pub mod cast;
pub(crate) mod dispatch;
pub mod elementwise;
pub mod embedding;
pub mod kv_cache;
pub mod layout;
pub mod matmul;
pub mod norm;
pub(crate) mod params;
pub mod reduce;
pub mod rope;
pub mod softmax;
pub mod unary;

pub use activation::{activation, gelu, gelu_tanh, relu, silu, swiglu, Activation};
pub use attention::{attention, AttentionLayout, AttentionOptions};
pub use elementwise::{
    add, add_scalar, binary, binary_scalar, div, div_scalar, mul, mul_scalar, sub, sub_scalar,
    BinaryOp,
};
pub use embedding::embedding;
pub use layout::{chunk, concat, narrow, permute, slice, split, transpose};
pub use matmul::{linear, matmul, matmul_with, MatmulKernel, MatmulOptions};
pub use norm::{
    add_layer_norm, add_layer_norm_post, add_rms_norm, add_rms_norm_post, l2_normalize, layer_norm,
    rms_norm, AddNorm,
};
pub use reduce::{
    argmax, argmax_dim, max, max_dim, mean, mean_dim, min, min_dim, reduce, reduce_dim, sum,
    sum_dim, Reduction,
};
pub use rope::{rope, RopeAxes, RopeLayout, RopeOptions};
pub use softmax::{log_softmax, log_softmax_with, softmax, softmax_with, SoftmaxOptions};
pub use unary::{
    abs, additive_mask, additive_mask_from_lengths, clamp, exp, log, neg, rsqrt, sigmoid, sqrt,
    tanh, unary, UnaryOp,
};

/// One op family: the name `openkern bench` and `openkern check` use for it, and the GPU
/// kernels it runs. A new family is added here once: [`crate::gpu::kernels`] (and so the
/// naga portability test) reads this list, and the CLI's tests fail for a family that has
/// no bench rows or no check.
#[derive(Debug)]
pub struct OpFamily {
    /// The family's name, e.g. `"softmax"`.
    pub name: &'static str,
    /// Every kernel variant its launchers can pick.
    pub kernels: &'static [&'static KernelSource],
}

/// Every op family, in the order tables list them.
pub static FAMILIES: &[OpFamily] = &[
    OpFamily {
        name: "elementwise",
        kernels: &[&crate::gpu::elementwise::ELEMENTWISE],
    },
    OpFamily {
        name: "cast",
        kernels: &[&crate::gpu::cast::CAST],
    },
    OpFamily {
        name: "softmax",
        kernels: &[
            &crate::gpu::softmax::SOFTMAX,
            &crate::gpu::softmax::SOFTMAX_SUBGROUP,
        ],
    },
    OpFamily {
        name: "norm",
        kernels: &[&crate::gpu::norm::NORM, &crate::gpu::norm::NORM_SUBGROUP],
    },
    OpFamily {
        name: "activation",
        kernels: &[&crate::gpu::activation::ACTIVATION],
    },
    OpFamily {
        name: "rope",
        kernels: &[&crate::gpu::rope::ROPE],
    },
    OpFamily {
        name: "embedding",
        kernels: &[&crate::gpu::embedding::EMBEDDING],
    },
    OpFamily {
        name: "reduce",
        kernels: &[
            &crate::gpu::reduce::REDUCE,
            &crate::gpu::reduce::REDUCE_SUBGROUP,
        ],
    },
    OpFamily {
        name: "unary",
        kernels: &[&crate::gpu::unary::UNARY],
    },
    OpFamily {
        name: "layout",
        kernels: &[&crate::gpu::layout::LAYOUT],
    },
    OpFamily {
        name: "attention",
        kernels: &[
            &crate::gpu::attention::ATTENTION,
            &crate::gpu::attention::ATTENTION_SUBGROUP,
            &crate::gpu::attention::ATTENTION_MERGE,
            &crate::gpu::kv_cache::KV_CACHE,
        ],
    },
    OpFamily {
        name: "matmul",
        kernels: crate::gpu::matmul::KERNELS,
    },
];
