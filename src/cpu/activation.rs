//! CPU twin of `shaders/activation.wgsl` (same formulas, same special values).

use super::lanes::{self, LaneOp};
use super::math::{each, each2, each_into, exp};
use super::table16::{self, Slot};
use super::unary::{map_lanes_or_blocks, map_pair_blocks, BLOCK};
use super::{take, CpuStorage, Pooled};
use crate::dtype::{DType, Element};
use crate::ops::activation::Activation;
use crate::tensor::CpuSlice;
use rayon::prelude::*;

/// erfc(z) for z ≥ 0, fractional error below 1.2e-7 (the shader's fit).
#[inline(always)]
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -z * z - 1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_8))))))));
    t * exp_full(p)
}

/// exp with IEEE ends (NaN stays NaN, overflow gives ∞, exp(−∞) = 0) and no branches,
/// for the activations, whose arguments are not pre-screened like softmax's.
#[inline(always)]
fn exp_full(x: f32) -> f32 {
    let e = exp(x);
    let e = if x > 88.722_83 { f32::INFINITY } else { e };
    if x.is_nan() {
        x
    } else {
        e
    }
}

#[inline(always)]
fn gelu(a: f32) -> f32 {
    let z = a * std::f32::consts::FRAC_1_SQRT_2;
    let e = erfc_pos(z.abs());
    if z >= 0.0 {
        a * (1.0 - 0.5 * e)
    } else {
        a * 0.5 * e
    }
}

#[inline(always)]
fn gelu_tanh(a: f32) -> f32 {
    let u = 0.797_884_6 * (a + 0.044_715 * a * a * a);
    a / (1.0 + exp_full(-2.0 * u))
}

#[inline(always)]
fn silu(a: f32) -> f32 {
    a / (1.0 + exp_full(-a))
}

/// `f` over `x` in f32 blocks, through the 8-lane form `lane` where the CPU has one.
fn map_unary<T: Element + Pooled>(
    x: &[T],
    lane: Option<LaneOp>,
    f: impl Fn(f32) -> f32 + Copy + Sync,
) -> Vec<T> {
    map_lanes_or_blocks(x, lane, |s, d| {
        if !lane.is_some_and(|op| lanes::map_into(op, s, d)) {
            each_into(s, d, f)
        }
    })
}

/// `silu(g) · u`: f32 and f16 data straight through the 8-lane forms where the CPU has
/// them, else blocks widened into L1 buffers.
fn map_swiglu<T: Element + Pooled>(g: &[T], u: &[T]) -> Vec<T> {
    let mut out = take::<T>(g.len());
    out.par_chunks_mut(BLOCK)
        .zip(g.par_chunks(BLOCK).zip(u.par_chunks(BLOCK)))
        .for_each(|(o, (gs, us))| {
            use bytemuck::{cast_slice as cs, cast_slice_mut as cm};
            let done = match T::DTYPE {
                DType::F32 => lanes::swiglu(cs(gs), cs(us), cm(o)),
                DType::F16 => lanes::swiglu_f16(cs(gs), cs(us), cm(o)),
                _ => false,
            };
            if !done {
                map_pair_blocks(o, gs, us, |a, b| each2(a, b, |v, w| silu(v) * w));
            }
        });
    out
}

// NaN passes through (a ≤ 0 is false for it)
#[inline(always)]
fn relu(a: f32) -> f32 {
    if a <= 0.0 {
        0.0
    } else {
        a
    }
}

/// `v[i] = act(v[i] + bias[i])` over one f32 row (the matmul epilogue), each activation
/// its own vectorised loop. SwiGLU, which takes two inputs, is refused before a plan
/// reaches a backend.
pub(crate) fn epilogue(v: &mut [f32], bias: Option<&[f32]>, act: Option<Activation>) {
    if let Some(b) = bias {
        each2(v, b, |x, y| x + y);
    }
    if act
        .and_then(LaneOp::of_activation)
        .is_some_and(|op| lanes::map(op, v))
    {
        return;
    }
    match act {
        None => {}
        Some(Activation::Gelu) => each(v, gelu),
        Some(Activation::GeluTanh) => each(v, gelu_tanh),
        Some(Activation::Silu) => each(v, silu),
        // through a copy: in place, LLVM turns ReLU's select into a masked store
        // (see `math::each_into`)
        Some(Activation::Relu) => {
            let mut t = [0f32; 256];
            for c in v.chunks_mut(256) {
                let t = &mut t[..c.len()];
                t.copy_from_slice(c);
                each_into(t, c, relu);
            }
        }
        Some(Activation::SwiGlu) => unreachable!("swiglu takes two inputs; ops refuse it here"),
    }
}

/// The op on `x`: a table lookup for the tabled 16-bit ops ([`table16`]), else computed.
pub(crate) fn run<T: Element + Pooled>(act: Activation, a: &[T], b: Option<&[T]>) -> Vec<T> {
    let slot = match act {
        Activation::Gelu => Some(Slot::Gelu),
        Activation::GeluTanh => Some(Slot::GeluTanh),
        Activation::Silu => Some(Slot::Silu),
        Activation::Relu | Activation::SwiGlu => None,
    };
    if let Some(t) = slot.and_then(|s| table16::table::<T>(s, |all| computed(act, all, None))) {
        return table16::lookup(a, t);
    }
    computed(act, a, b)
}

/// The activation computed per element (f32 formula; 16-bit data widened and narrowed).
pub(crate) fn computed<T: Element + Pooled>(act: Activation, a: &[T], b: Option<&[T]>) -> Vec<T> {
    match (act, b) {
        (Activation::SwiGlu, Some(b)) => map_swiglu(a, b),
        (Activation::SwiGlu, None) => unreachable!("swiglu is called with both operands"),
        (Activation::Gelu, _) => map_unary(a, Some(LaneOp::Gelu), gelu),
        (Activation::GeluTanh, _) => map_unary(a, Some(LaneOp::GeluTanh), gelu_tanh),
        (Activation::Silu, _) => map_unary(a, Some(LaneOp::Silu), silu),
        (Activation::Relu, _) => map_unary(a, None, relu),
    }
}

pub(crate) fn activation(act: Activation, a: CpuSlice<'_>, b: Option<CpuSlice<'_>>) -> CpuStorage {
    macro_rules! go {
        ($v:expr, $variant:ident, $t:ty) => {
            CpuStorage::$variant(run::<$t>(act, $v, b.map(|b| b.as_slice::<$t>())))
        };
    }
    match a {
        CpuSlice::F32(v) => go!(v, F32, f32),
        CpuSlice::F16(v) => go!(v, F16, half::f16),
        CpuSlice::BF16(v) => go!(v, BF16, half::bf16),
        CpuSlice::U32(_) => unreachable!("activations refuse u32 before dispatch"),
    }
}
