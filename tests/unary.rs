//! Unary math (exp, log, sqrt, rsqrt, neg, abs, tanh, sigmoid, clamp) and the additive
//! masks against f64 on every backend and dtype, odd lengths and special values.

mod common;
use common::*;
use openkern::{ops, DType, Device, Error, Tensor};

const OPS: [ops::UnaryOp; 9] = [
    ops::UnaryOp::Exp,
    ops::UnaryOp::Log,
    ops::UnaryOp::Sqrt,
    ops::UnaryOp::Rsqrt,
    ops::UnaryOp::Neg,
    ops::UnaryOp::Abs,
    ops::UnaryOp::Tanh,
    ops::UnaryOp::Sigmoid,
    ops::UnaryOp::Clamp {
        min: -0.5,
        max: 0.25,
    },
];

fn reference(op: ops::UnaryOp, x: f64) -> f64 {
    match op {
        ops::UnaryOp::Exp => x.exp(),
        ops::UnaryOp::Log => x.ln(),
        ops::UnaryOp::Sqrt => x.sqrt(),
        ops::UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        ops::UnaryOp::Neg => -x,
        ops::UnaryOp::Abs => x.abs(),
        ops::UnaryOp::Tanh => x.tanh(),
        ops::UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        ops::UnaryOp::Clamp { min, max } => {
            if x.is_nan() {
                x
            } else {
                x.max(min as f64).min(max as f64)
            }
        }
        ops::UnaryOp::AdditiveMask => {
            if x != 0.0 {
                0.0
            } else {
                f64::NEG_INFINITY
            }
        }
    }
}

/// Inputs in the op's domain: positive for log/sqrt/rsqrt, a wide range otherwise.
fn inputs(op: ops::UnaryOp, n: usize, dtype: DType) -> Vec<f32> {
    let r = random(n, n as u64 + 7);
    let v: Vec<f32> = match op {
        ops::UnaryOp::Log | ops::UnaryOp::Sqrt | ops::UnaryOp::Rsqrt => {
            r.iter().map(|v| (v * 8.0).exp()).collect()
        }
        ops::UnaryOp::Exp => r.iter().map(|v| v * 10.0).collect(),
        _ => r.iter().map(|v| v * 6.0).collect(),
    };
    quantize(&v, dtype)
}

fn unary_against_f64(device: &Device) {
    for dtype in DType::ALL {
        for &n in &[1usize, 3, 17, 255, 1000, 4097] {
            for op in OPS {
                let x = inputs(op, n, dtype);
                let t = tensor(device, &x, &[n], dtype);
                let got = ops::unary(&t, op).unwrap();
                assert_eq!(got.dtype(), dtype);
                let want: Vec<f64> = x.iter().map(|&v| reference(op, v as f64)).collect();
                // f32 math to a few ulp (Vulkan's exp: 3 + 2|x| ulp), then the output
                // rounding; log near 1 and tanh/sigmoid have absolute bounds (2^-21 for
                // Vulkan's log in [0.5, 2]); 16-bit subnormal outputs an absolute one
                let rtol = dtype.epsilon() * 1.01 + 4e-6;
                let atol = match op {
                    ops::UnaryOp::Tanh | ops::UnaryOp::Sigmoid => 1e-6,
                    ops::UnaryOp::Log => 5e-7,
                    _ if dtype == DType::F16 => 6e-8,
                    _ => 0.0,
                };
                assert_close(
                    &format!("{} [{n}] {dtype} on {device:?}", op.name()),
                    &got.to_f32_vec().unwrap(),
                    &want,
                    atol,
                    rtol,
                );
            }
        }
    }
}
backend_tests!(unary_against_f64 => unary_against_f64_cpu, unary_against_f64_gpu);

fn unary_special_values(device: &Device) {
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    let x = [
        0.0f32, -0.0, 1.0, -1.0, inf, -inf, nan, 100.0, -100.0, 1e-30,
    ];
    for dtype in DType::ALL {
        let xq = quantize(&x, dtype);
        let t = tensor(device, &xq, &[x.len()], dtype);
        for op in OPS {
            let got = ops::unary(&t, op).unwrap().to_f32_vec().unwrap();
            let want: Vec<f64> = xq
                .iter()
                .map(|&v| {
                    let r = reference(op, v as f64);
                    // the output dtype's range: overflow to ±inf, tiny values to 0
                    let q = quantize(&[r as f32], dtype)[0];
                    if r.is_nan() {
                        r
                    } else {
                        q as f64
                    }
                })
                .collect();
            assert_close(
                &format!("{} special values {dtype} on {device:?}", op.name()),
                &got,
                &want,
                1e-6,
                dtype.epsilon() * 1.01 + 2e-6,
            );
        }
        // rsqrt keeps the sign of zero, as 1/sqrt(-0) = -inf in IEEE arithmetic
        let got = ops::rsqrt(&t).unwrap().to_f32_vec().unwrap();
        assert_eq!(got[1], -inf, "rsqrt(-0) on {device:?}");
    }
    let t = tensor(device, &[1.0], &[1], DType::F32);
    for (lo, hi) in [(1.0, 0.0), (f32::NAN, 1.0)] {
        assert!(matches!(
            ops::clamp(&t, lo, hi).unwrap_err(),
            Error::Argument { op: "clamp", .. }
        ));
    }
    let ids = Tensor::from_slice(device, &[1u32], &[1]).unwrap();
    assert!(matches!(
        ops::exp(&ids).unwrap_err(),
        Error::UnsupportedDType { .. }
    ));
}
backend_tests!(unary_special_values => unary_special_values_cpu, unary_special_values_gpu);

fn additive_masks(device: &Device) {
    let inf = f32::NEG_INFINITY;
    for dtype in DType::ALL {
        let keep = tensor(device, &[1.0, 1.0, 0.0, 1.0, 0.0, 0.0], &[2, 3], dtype);
        let m = ops::additive_mask(&keep).unwrap();
        assert_eq!(m.dtype(), dtype);
        assert_eq!(m.to_f32_vec().unwrap(), vec![0.0, 0.0, inf, 0.0, inf, inf]);
        let m = ops::additive_mask_from_lengths(device, &[2, 0, 3], 3, dtype).unwrap();
        assert_eq!(m.shape(), &[3, 3]);
        assert_eq!(
            m.to_f32_vec().unwrap(),
            vec![0.0, 0.0, inf, inf, inf, inf, 0.0, 0.0, 0.0]
        );
        // through softmax: masked columns get probability 0, an all-masked row 0s
        let x = tensor(device, &random(9, 1), &[3, 1, 3], dtype);
        let p = ops::softmax_with(
            &x,
            &ops::SoftmaxOptions {
                mask: Some(&m.reshape(&[3, 1, 3]).unwrap()),
                ..Default::default()
            },
        )
        .unwrap()
        .to_f32_vec()
        .unwrap();
        assert_eq!(p[2], 0.0);
        assert_eq!(&p[3..6], &[0.0, 0.0, 0.0]);
        assert!((p[0] + p[1] - 1.0).abs() < 4.0 * dtype.epsilon() as f32);
    }
    assert!(matches!(
        ops::additive_mask_from_lengths(device, &[4], 3, DType::F32).unwrap_err(),
        Error::Argument {
            name: "lengths",
            ..
        }
    ));
}
backend_tests!(additive_masks => additive_masks_cpu, additive_masks_gpu);

/// An f32 mask works with 16-bit scores; a bf16 mask with f16 scores is refused.
fn softmax_mask_dtypes(device: &Device) {
    let x = tensor(device, &random(8, 2), &[2, 4], DType::F16);
    let m32 = ops::additive_mask_from_lengths(device, &[3, 1], 4, DType::F32).unwrap();
    let m16 = m32.cast(DType::F16).unwrap();
    let opts = |m| ops::SoftmaxOptions {
        mask: Some(m),
        ..Default::default()
    };
    let a = ops::softmax_with(&x, &opts(&m32)).unwrap();
    let b = ops::softmax_with(&x, &opts(&m16)).unwrap();
    assert_eq!(a.to_f32_vec().unwrap(), b.to_f32_vec().unwrap());
    let mb = m32.cast(DType::BF16).unwrap();
    let e = ops::softmax_with(&x, &opts(&mb)).unwrap_err();
    assert!(matches!(e, Error::ParamDType { param: "mask", .. }), "{e}");
    assert!(e.to_string().contains("`.cast(DType::F16)`"), "{e}");
}
backend_tests!(softmax_mask_dtypes => softmax_mask_dtypes_cpu, softmax_mask_dtypes_gpu);
