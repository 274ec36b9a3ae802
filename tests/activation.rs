//! GELU (erf, tanh), SiLU, ReLU, SwiGLU and the scalar elementwise forms against f64,
//! every backend and dtype, odd lengths, and the documented special values.

mod common;
use common::*;
use openkern::Device;
use openkern::{ops, DType, Error};

/// erf in f64: Taylor series below 3 (cancellation costs ~4 of 16 digits there), the
/// continued fraction for erfc above.
fn erf(x: f64) -> f64 {
    if x.abs() < 3.0 {
        let mut sum = 0.0f64;
        let mut term = x;
        for k in 0..200 {
            sum += term / (2 * k + 1) as f64;
            term *= -x * x / (k + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // continued fraction erfc(z) = e^{-z²}/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + ..))))
        let z = x.abs();
        let mut f = z;
        for k in (1..200).rev() {
            f = z + (k as f64 / 2.0) / f;
        }
        let erfc = (-z * z).exp() / (std::f64::consts::PI.sqrt() * f);
        x.signum() * (1.0 - erfc)
    }
}

fn reference(act: ops::Activation, a: f64, b: f64) -> f64 {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    match act {
        ops::Activation::Gelu => 0.5 * a * (1.0 + erf(a / std::f64::consts::SQRT_2)),
        ops::Activation::GeluTanh => {
            0.5 * a
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (a + 0.044715 * a.powi(3))).tanh())
        }
        ops::Activation::Silu => a * sig(a),
        ops::Activation::SwiGlu => a * sig(a) * b,
        ops::Activation::Relu => a.max(0.0),
    }
}

const ACTS: [ops::Activation; 5] = [
    ops::Activation::Gelu,
    ops::Activation::GeluTanh,
    ops::Activation::Silu,
    ops::Activation::SwiGlu,
    ops::Activation::Relu,
];

fn activations_against_f64(device: &Device) {
    for dtype in DType::ALL {
        for &n in &[1usize, 3, 17, 255, 1000, 4097] {
            let a = quantize(
                &random(n, n as u64)
                    .iter()
                    .map(|v| v * 12.0)
                    .collect::<Vec<_>>(),
                dtype,
            );
            let b = quantize(&random(n, 3), dtype);
            let (ta, tb) = (
                tensor(device, &a, &[n], dtype),
                tensor(device, &b, &[n], dtype),
            );
            for act in ACTS {
                let got = if act == ops::Activation::SwiGlu {
                    ops::swiglu(&ta, &tb)
                } else {
                    ops::activation(act, &ta)
                }
                .unwrap();
                let want: Vec<f64> = a
                    .iter()
                    .zip(&b)
                    .map(|(&x, &y)| reference(act, x as f64, y as f64))
                    .collect();
                // f32 transcendental error ~1e-6 relative; tiny tails of gelu/silu
                // near -12 are ~1e-32 and compared absolutely.
                let rtol = dtype.epsilon() * 1.01 + 4e-6;
                let atol = if dtype == DType::F16 { 6e-8 } else { 1e-12 };
                assert_close(
                    &format!("{} [{n}] {dtype} on {device:?}", act.name()),
                    &got.to_f32_vec().unwrap(),
                    &want,
                    atol,
                    rtol,
                );
            }
        }
    }
}
backend_tests!(activations_against_f64 => activations_against_f64_cpu, activations_against_f64_gpu);

fn special_values(device: &Device) {
    for dtype in DType::ALL {
        let x = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];
        let t = tensor(device, &x, &[5], dtype);
        for act in [
            ops::Activation::Gelu,
            ops::Activation::GeluTanh,
            ops::Activation::Silu,
        ] {
            let y = ops::activation(act, &t).unwrap().to_f32_vec().unwrap();
            assert!(y[0].is_nan(), "{} NaN {device:?}", act.name());
            assert_eq!(y[1], f32::INFINITY, "{} +inf {device:?}", act.name());
            assert!(
                y[2].is_nan(),
                "{} -inf is documented as NaN {device:?}",
                act.name()
            );
            assert_eq!(y[3], 0.0);
        }
        let y = ops::relu(&t).unwrap().to_f32_vec().unwrap();
        assert!(y[0].is_nan(), "relu NaN {device:?}");
        assert_eq!(&y[1..4], &[f32::INFINITY, 0.0, 0.0]);
    }
}
backend_tests!(special_values => special_values_cpu, special_values_gpu);

fn scalar_forms(device: &Device) {
    for dtype in DType::ALL {
        let a = quantize(&random(33, 4), dtype);
        let t = tensor(device, &a, &[3, 11], dtype);
        let got = ops::sub_scalar(&t, 0.75).unwrap().to_f32_vec().unwrap();
        let want: Vec<f64> = a.iter().map(|&v| v as f64 - 0.75).collect();
        assert_close(
            &format!("sub_scalar {dtype}"),
            &got,
            &want,
            1e-30,
            dtype.epsilon() * 1.01 + 1e-7,
        );
        let got = ops::div_scalar(&t, 3.0).unwrap().to_f32_vec().unwrap();
        let want: Vec<f64> = a.iter().map(|&v| v as f64 / 3.0).collect();
        let atol = if dtype == DType::F16 { 6e-8 } else { 1e-30 };
        assert_close(
            &format!("div_scalar {dtype}"),
            &got,
            &want,
            atol,
            dtype.epsilon() * 1.01 + 1e-7,
        );
    }
}
backend_tests!(scalar_forms => scalar_forms_cpu, scalar_forms_gpu);

fn mistakes_are_typed_errors(device: &Device) {
    let a = tensor(device, &random(6, 1), &[2, 3], DType::F32);
    let b = tensor(device, &random(6, 1), &[3, 2], DType::F32);
    assert!(matches!(
        ops::swiglu(&a, &b).unwrap_err(),
        Error::Shape { .. }
    ));
    let h = tensor(device, &random(6, 1), &[2, 3], DType::F16);
    assert!(matches!(
        ops::swiglu(&a, &h).unwrap_err(),
        Error::DTypeMismatch { .. }
    ));
    assert!(matches!(
        ops::activation(ops::Activation::SwiGlu, &a).unwrap_err(),
        Error::Argument { .. }
    ));
    let ids = openkern::Tensor::from_slice(device, &[1u32, 2], &[2]).unwrap();
    assert!(matches!(
        ops::gelu(&ids).unwrap_err(),
        Error::UnsupportedDType { .. }
    ));
    assert!(matches!(
        ops::add(&ids, &ids).unwrap_err(),
        Error::UnsupportedDType { .. }
    ));
    assert!(matches!(
        ops::mul_scalar(&ids, 2.0).unwrap_err(),
        Error::UnsupportedDType { .. }
    ));
}
backend_tests!(mistakes_are_typed_errors => mistakes_are_typed_errors_cpu, mistakes_are_typed_errors_gpu);
