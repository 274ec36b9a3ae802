//! The public op API. Each op checks shapes, dtypes and devices, then dispatches to the
//! GPU launcher in `gpu/` or the CPU twin in `cpu/`. One file per op family.

pub mod activation;
pub mod attention;
pub mod cast;
pub mod elementwise;
pub mod embedding;
pub mod kv_cache;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod rope;
pub mod softmax;

pub use activation::{activation, gelu, gelu_tanh, relu, silu, swiglu, Activation};
pub use attention::{attention, AttentionLayout, AttentionOptions};
pub use elementwise::{
    add, add_scalar, binary, binary_scalar, div, div_scalar, mul, mul_scalar, sub, sub_scalar,
    BinaryOp,
};
pub use embedding::embedding;
pub use layout::{concat, permute, transpose};
pub use matmul::{linear, matmul, matmul_with, MatmulKernel, MatmulOptions};
pub use norm::{add_layer_norm, add_rms_norm, layer_norm, rms_norm};
pub use reduce::{argmax, max, mean, reduce, sum, Reduction};
pub use rope::{rope, RopeAxes, RopeLayout, RopeOptions};
pub use softmax::{log_softmax, log_softmax_with, softmax, softmax_with, SoftmaxOptions};
