//! The public op API. Each op checks shapes, dtypes and devices, then dispatches to the
//! GPU launcher in `gpu/` or the CPU twin in `cpu/`. One file per op family.

pub mod activation;
pub mod cast;
pub mod elementwise;
pub mod embedding;
pub mod layout;
pub mod matmul;
pub mod norm;
pub(crate) mod params;
pub mod reduce;
pub mod rope;
pub mod softmax;
pub mod unary;

pub use activation::{activation, gelu, gelu_tanh, relu, silu, swiglu, Activation};
pub use elementwise::{
    add, add_scalar, binary, binary_scalar, div, div_scalar, mul, mul_scalar, sub, sub_scalar,
    BinaryOp,
};
pub use embedding::embedding;
pub use layout::{concat, permute, transpose};
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
