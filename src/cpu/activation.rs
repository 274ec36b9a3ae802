//! CPU twin of `shaders/activation.wgsl` (same formulas, same special values).

use super::math::exp;
use super::{CpuStorage, PARALLEL_MIN};
use crate::ops::activation::Activation;
use rayon::prelude::*;

/// erfc(z) for z ≥ 0, fractional error below 1.2e-7 (the shader's fit).
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

/// exp with libm semantics at the ends (NaN stays NaN, overflow gives ∞), for the
/// activations, whose arguments are not pre-screened like softmax's.
fn exp_full(x: f32) -> f32 {
    if x.is_nan() || x > 88.0 {
        x.exp()
    } else {
        exp(x)
    }
}

pub(crate) fn apply(act: Activation, a: f32, b: f32) -> f32 {
    match act {
        Activation::Gelu => {
            let z = a * std::f32::consts::FRAC_1_SQRT_2;
            if z >= 0.0 {
                a * (1.0 - 0.5 * erfc_pos(z))
            } else {
                a * 0.5 * erfc_pos(-z)
            }
        }
        Activation::GeluTanh => {
            let u = 0.797_884_6 * (a + 0.044_715 * a * a * a);
            a / (1.0 + exp_full(-2.0 * u))
        }
        Activation::Silu => a / (1.0 + exp_full(-a)),
        Activation::SwiGlu => a / (1.0 + exp_full(-a)) * b,
        Activation::Relu => a.max(0.0),
    }
}

pub(crate) fn activation(act: Activation, a: &CpuStorage, b: Option<&CpuStorage>) -> CpuStorage {
    let x = a.to_f32();
    let mut out = super::take::<f32>(x.len());
    match b {
        Some(b) => {
            let y = b.to_f32();
            out.par_iter_mut()
                .with_min_len(PARALLEL_MIN)
                .zip(x.par_iter().zip(y.par_iter()))
                .for_each(|(o, (&p, &q))| *o = apply(act, p, q));
        }
        None => out
            .par_iter_mut()
            .with_min_len(PARALLEL_MIN)
            .zip(x.par_iter())
            .for_each(|(o, &p)| *o = apply(act, p, 0.0)),
    }
    CpuStorage::from_f32(a.dtype(), out)
}
