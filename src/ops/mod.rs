//! The public op API. Each op checks shapes, dtypes and devices, then dispatches to the
//! GPU launcher in `gpu/` or the CPU twin in `cpu/`. One file per op family.

pub mod cast;
pub mod elementwise;
pub mod matmul;

pub use elementwise::{
    add, add_scalar, binary, binary_scalar, div, mul, mul_scalar, sub, BinaryOp,
};
pub use matmul::{linear, matmul, matmul_with, Activation, MatmulKernel, MatmulOptions};
