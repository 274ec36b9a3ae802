//! Elementwise add/sub/mul/div with broadcasting, every dtype, every backend, against f64.

mod common;
use common::*;
use openkern::Device;
use openkern::{ops, DType, Error};

fn reference(
    op: ops::BinaryOp,
    a: &[f32],
    ash: &[usize],
    b: &[f32],
    bsh: &[usize],
    out: &[usize],
) -> Vec<f64> {
    let strides = |sh: &[usize]| openkern::shape::broadcast_strides(sh, out);
    let (sa, sb) = (strides(ash), strides(bsh));
    let os = openkern::shape::contiguous_strides(out);
    let n: usize = out.iter().product();
    (0..n)
        .map(|i| {
            let (mut ia, mut ib) = (0, 0);
            for d in 0..out.len() {
                let c = (i / os[d]) % out[d];
                ia += c * sa[d];
                ib += c * sb[d];
            }
            let (x, y) = (a[ia] as f64, b[ib] as f64);
            match op {
                ops::BinaryOp::Add => x + y,
                ops::BinaryOp::Sub => x - y,
                ops::BinaryOp::Mul => x * y,
                ops::BinaryOp::Div => x / y,
            }
        })
        .collect()
}

const OPS: [ops::BinaryOp; 4] = [
    ops::BinaryOp::Add,
    ops::BinaryOp::Sub,
    ops::BinaryOp::Mul,
    ops::BinaryOp::Div,
];

fn binary_ops_broadcast_against_f64_reference(device: &Device) {
    // Shapes that are not multiples of the 512-element workgroup reach, odd lengths
    // (the last 16-bit word half-filled) and every broadcast pattern.
    let cases: &[(&[usize], &[usize])] = &[
        (&[1], &[1]),
        (&[3], &[3]),
        (&[17], &[1]),
        (&[63, 65], &[65]),
        (&[65, 1], &[1, 127]),
        (&[3, 17, 257], &[17, 1]),
        (&[2, 1, 5, 3], &[7, 1, 3]),
        (&[1027], &[1027]),
        (&[], &[5]),
        // A bias row (even and odd length): the i % len fast path, whole words and single.
        (&[5, 64], &[1, 64]),
        (&[3, 4, 6], &[4, 6]),
        (&[7, 33], &[33]),
    ];
    for dtype in DType::ALL {
        for &(ash, bsh) in cases {
            let out: Vec<usize> = openkern::shape::broadcast_shapes("t", ash, bsh).unwrap();
            let na: usize = ash.iter().product();
            let nb: usize = bsh.iter().product();
            let a = quantize(&random(na, 1), dtype);
            // Keep divisors away from zero so the relative error is meaningful.
            let b: Vec<f32> = quantize(
                &random(nb, 2)
                    .iter()
                    .map(|v| v + 2.0 * v.signum() + 0.5)
                    .collect::<Vec<_>>(),
                dtype,
            );
            let ta = tensor(device, &a, ash, dtype);
            let tb = tensor(device, &b, bsh, dtype);
            for op in OPS {
                let got = ops::binary(op, &ta, &tb).unwrap();
                assert_eq!(got.shape(), &out[..]);
                assert_eq!(got.dtype(), dtype);
                let want = reference(op, &a, ash, &b, bsh, &out);
                let eps = dtype.epsilon();
                assert_close(
                    &format!("{} {:?} {:?} {dtype} on {:?}", op.name(), ash, bsh, device),
                    &got.to_f32_vec().unwrap(),
                    &want,
                    // f16 results below 6.1e-5 are subnormal: absolute spacing 6e-8.
                    if dtype == DType::F16 { 6e-8 } else { 1e-30 },
                    eps * 1.01 + 1e-7,
                );
            }
        }
    }
}
backend_tests!(binary_ops_broadcast_against_f64_reference => binary_ops_broadcast_against_f64_reference_cpu, binary_ops_broadcast_against_f64_reference_gpu);

fn scalar_ops_and_ieee_specials(device: &Device) {
    for dtype in DType::ALL {
        let a = [1.0f32, -2.0, 0.0, f32::NAN, f32::INFINITY, 3.5, -0.25];
        let t = tensor(device, &a, &[7], dtype);
        let got = ops::add_scalar(&t, 1.5).unwrap().to_f32_vec().unwrap();
        let want: Vec<f64> = quantize(&a, dtype)
            .iter()
            .map(|&v| v as f64 + 1.5)
            .collect();
        assert_close(
            &format!("add_scalar {dtype} {device:?}"),
            &got,
            &want,
            0.0,
            dtype.epsilon(),
        );
        let zeros = tensor(device, &[0.0; 7], &[7], dtype);
        let got = ops::div(&t, &zeros).unwrap().to_f32_vec().unwrap();
        let want: Vec<f64> = quantize(&a, dtype)
            .iter()
            .map(|&v| v as f64 / 0.0)
            .collect();
        assert_close(&format!("x/0 {dtype} {device:?}"), &got, &want, 0.0, 0.0);
    }
}
backend_tests!(scalar_ops_and_ieee_specials => scalar_ops_and_ieee_specials_cpu, scalar_ops_and_ieee_specials_gpu);

#[test]
fn mistakes_are_typed_errors() {
    for device in devices() {
        let a = tensor(&device, &random(6, 1), &[2, 3], DType::F32);
        let b = tensor(&device, &random(4, 2), &[4], DType::F32);
        let e = ops::add(&a, &b).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Broadcast {
                    dim: 0,
                    lhs_dim: 3,
                    rhs_dim: 4,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("equal or one of them 1"), "{e}");
        let h = tensor(&device, &random(3, 2), &[3], DType::F16);
        assert!(matches!(
            ops::mul(&a, &h).unwrap_err(),
            Error::DTypeMismatch { .. }
        ));
        let deep = tensor(&device, &[1.0], &[1; 9], DType::F32);
        assert!(matches!(
            ops::add(&deep, &deep).unwrap_err(),
            Error::Shape { .. }
        ));
    }
    if let Some(gpu) = gpu() {
        let a = tensor(&gpu, &[1.0], &[1], DType::F32);
        let c = tensor(&openkern::Device::cpu(), &[1.0], &[1], DType::F32);
        assert!(matches!(
            ops::add(&a, &c).unwrap_err(),
            Error::DeviceMismatch { .. }
        ));
    }
}

/// Past 65535 workgroups the grid folds into a second dimension; every element of a
/// tensor that needs the fold must still be computed exactly once.
#[test]
fn grids_over_65535_workgroups_fold() {
    let Some(gpu) = gpu() else { return };
    // 65535 groups × 256 invocations × 2 elements, plus a ragged tail.
    let n = 65535 * 512 + 3 * 512 + 7;
    let a: Vec<half::f16> = (0..n)
        .map(|i| half::f16::from_f32((i % 2048) as f32))
        .collect();
    let t = openkern::Tensor::from_slice(&gpu, &a, &[n]).unwrap();
    let got = ops::add_scalar(&t, 1.0)
        .unwrap()
        .to_vec::<half::f16>()
        .unwrap();
    let wrong = (0..n)
        .filter(|&i| got[i].to_f32() != (i % 2048) as f32 + 1.0)
        .count();
    assert_eq!(
        wrong, 0,
        "{wrong} of {n} elements wrong after folding the grid"
    );
}
