//! Activations, elementwise: GELU (erf and tanh forms), SiLU, ReLU, and SwiGLU fused with
//! its gate product. Arithmetic is f32; the output has the input's dtype.
//!
//! Special values follow the IEEE arithmetic of each formula: NaN gives NaN, +∞ gives +∞,
//! and −∞ gives NaN for GELU, SiLU and SwiGLU (−∞ · 0, as in PyTorch) and 0 for ReLU.

use super::dispatch;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Which activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Activation {
    /// `x · Φ(x)`, the exact GELU (erf form; PyTorch's default), to about 1e-7 relative.
    Gelu = 1,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, GPT-2's approximation.
    GeluTanh = 2,
    /// `x · sigmoid(x)` (a.k.a. swish).
    Silu = 3,
    /// `silu(gate) · up`: the gated unit of Llama-style MLPs; see [`swiglu`].
    SwiGlu = 5,
    /// `max(x, 0)`.
    Relu = 4,
}

impl Activation {
    /// The activation's number in every kernel (`activate(x, code)` in
    /// `shaders/common/activation.wgsl`, the activation kernel's `OP` and the matmul
    /// epilogue's `ACT`): 1 gelu, 2 gelu_tanh, 3 silu, 4 relu, 5 swiglu; 0 is none.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The activation's name in errors and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::Silu => "silu",
            Activation::SwiGlu => "swiglu",
            Activation::Relu => "relu",
        }
    }
}

/// Applies a one-input activation. For [`Activation::SwiGlu`] use [`swiglu`].
pub fn activation(act: Activation, x: &Tensor) -> Result<Tensor> {
    if act == Activation::SwiGlu {
        return Err(Error::Argument {
            op: "activation",
            name: "act",
            value: "SwiGlu".into(),
            expected:
                "a one-input activation; SwiGLU takes two tensors: call ops::swiglu(gate, up)",
        });
    }
    run(act, x, None)
}

/// GELU, erf form.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    run(Activation::Gelu, x, None)
}

/// GELU, tanh approximation.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    run(Activation::GeluTanh, x, None)
}

/// SiLU: `x · sigmoid(x)`.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    run(Activation::Silu, x, None)
}

/// ReLU: `max(x, 0)`.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    run(Activation::Relu, x, None)
}

/// SwiGLU, fused: `silu(gate) · up` in one pass (reads both, writes once, where
/// separate ops would make three passes). `gate` and `up` share shape and dtype.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let op = "swiglu";
    dispatch::same_device_and_dtype(op, gate, [up])?;
    if gate.shape() != up.shape() {
        return Err(Error::shape(
            op,
            format!(
                "gate has shape {:?} and up has {:?}; they must match (split the fused projection's output in two halves of equal shape)",
                gate.shape(),
                up.shape()
            ),
        ));
    }
    run(Activation::SwiGlu, gate, Some(up))
}

fn run(act: Activation, a: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    a.expect_float(act.name())?;
    dispatch::run1(
        act.name(),
        &[Some(a), b].into_iter().flatten().collect::<Vec<_>>(),
        a.shape(),
        a.dtype(),
        |g, out| crate::gpu::activation::activation(g, act, a, b, out),
        || {
            Ok(crate::cpu::activation::activation(
                act,
                a.cpu_storage(),
                b.map(|b| b.cpu_storage()),
            ))
        },
    )
}
