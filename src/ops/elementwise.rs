//! Binary elementwise ops with NumPy broadcasting: add, sub, mul, div, and their
//! scalar forms. Inputs share one dtype; the output has it too; arithmetic is f32.
//! NaN and infinity propagate as in IEEE arithmetic (x/0 = ±inf, 0/0 = NaN).

use super::dispatch;
use crate::error::Result;
use crate::shape::{broadcast_shapes, check_rank};
use crate::tensor::Tensor;

/// Which binary op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum BinaryOp {
    /// a + b
    Add = 0,
    /// a − b
    Sub = 1,
    /// a · b
    Mul = 2,
    /// a / b
    Div = 3,
}

impl BinaryOp {
    /// The op's name in errors and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

pub(crate) enum Operand<'a> {
    Tensor(&'a Tensor),
    Scalar(f32),
}

/// `lhs op rhs`, broadcasting the shapes.
pub fn binary(op: BinaryOp, lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    let name = op.name();
    lhs.expect_float(name)?;
    dispatch::same_device_and_dtype(name, lhs, [rhs])?;
    let out_shape = broadcast_shapes(name, lhs.shape(), rhs.shape())?;
    check_rank(name, &out_shape)?;
    run(op, lhs, Operand::Tensor(rhs), &out_shape)
}

/// `lhs op scalar`.
pub fn binary_scalar(op: BinaryOp, lhs: &Tensor, scalar: f32) -> Result<Tensor> {
    lhs.expect_float(op.name())?;
    run(op, lhs, Operand::Scalar(scalar), lhs.shape())
}

fn run(op: BinaryOp, lhs: &Tensor, rhs: Operand<'_>, out_shape: &[usize]) -> Result<Tensor> {
    dispatch::run1(
        op.name(),
        &match rhs {
            Operand::Tensor(t) => vec![lhs, t],
            Operand::Scalar(_) => vec![lhs],
        },
        out_shape,
        lhs.dtype(),
        |g, out| crate::gpu::elementwise::binary(g, op, lhs, &rhs, out),
        || {
            let r = match rhs {
                Operand::Tensor(t) => Ok((t.cpu_storage(), t.shape())),
                Operand::Scalar(s) => Err(s),
            };
            Ok(crate::cpu::elementwise::binary(
                op,
                (lhs.cpu_storage(), lhs.shape()),
                r,
                out_shape,
            ))
        },
    )
}

/// `lhs + rhs` with broadcasting.
pub fn add(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    binary(BinaryOp::Add, lhs, rhs)
}

/// `lhs − rhs` with broadcasting.
pub fn sub(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    binary(BinaryOp::Sub, lhs, rhs)
}

/// `lhs · rhs` with broadcasting.
pub fn mul(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    binary(BinaryOp::Mul, lhs, rhs)
}

/// `lhs / rhs` with broadcasting.
pub fn div(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    binary(BinaryOp::Div, lhs, rhs)
}

/// `lhs + scalar`.
pub fn add_scalar(lhs: &Tensor, scalar: f32) -> Result<Tensor> {
    binary_scalar(BinaryOp::Add, lhs, scalar)
}

/// `lhs · scalar`.
pub fn mul_scalar(lhs: &Tensor, scalar: f32) -> Result<Tensor> {
    binary_scalar(BinaryOp::Mul, lhs, scalar)
}

/// `lhs − scalar`.
pub fn sub_scalar(lhs: &Tensor, scalar: f32) -> Result<Tensor> {
    binary_scalar(BinaryOp::Sub, lhs, scalar)
}

/// `lhs / scalar` (IEEE: division by 0 gives ±∞, or NaN for 0/0).
pub fn div_scalar(lhs: &Tensor, scalar: f32) -> Result<Tensor> {
    binary_scalar(BinaryOp::Div, lhs, scalar)
}
