//! sum, mean, max, argmax over the last dimension against f64 on every backend, dtype
//! and reduction form, with NaN, ties and odd lengths.

mod common;
use common::*;
use openkern::Device;
use openkern::{ops, DType, Error};

fn reductions_against_f64(device: &Device) {
    for dtype in DType::ALL {
        for &n in &[1usize, 3, 17, 63, 65, 127, 255, 257, 1000, 4097] {
            let rows = 3;
            let x = quantize(
                &random(rows * n, n as u64)
                    .iter()
                    .map(|v| v * 100.0)
                    .collect::<Vec<_>>(),
                dtype,
            );
            let t = tensor(device, &x, &[rows, n], dtype);
            let what = |op: &str| format!("{op} [{rows}, {n}] {dtype} on {device:?}");
            let sums: Vec<f64> = x
                .chunks(n)
                .map(|r| r.iter().map(|&v| v as f64).sum())
                .collect();
            let abs: Vec<f64> = x
                .chunks(n)
                .map(|r| r.iter().map(|&v| (v as f64).abs()).sum())
                .collect();
            let got = ops::sum(&t).unwrap();
            assert_eq!(got.shape(), &[rows]);
            // f32 summation error relative to Σ|x|, then the output rounding
            let atol = 1e-6 * abs.iter().cloned().fold(0.0, f64::max);
            assert_close(
                &what("sum"),
                &got.to_f32_vec().unwrap(),
                &sums,
                atol,
                dtype.epsilon() * 1.01,
            );
            let means: Vec<f64> = sums.iter().map(|s| s / n as f64).collect();
            assert_close(
                &what("mean"),
                &ops::mean(&t).unwrap().to_f32_vec().unwrap(),
                &means,
                atol / n as f64,
                dtype.epsilon() * 1.01,
            );
            let maxes: Vec<f64> = x
                .chunks(n)
                .map(|r| r.iter().map(|&v| v as f64).fold(f64::MIN, f64::max))
                .collect();
            assert_close(
                &what("max"),
                &ops::max(&t).unwrap().to_f32_vec().unwrap(),
                &maxes,
                0.0,
                0.0,
            );
            let idx: Vec<u32> = x
                .chunks(n)
                .map(|r| {
                    r.iter()
                        .position(|&v| {
                            v as f64 == r.iter().map(|&v| v as f64).fold(f64::MIN, f64::max)
                        })
                        .unwrap() as u32
                })
                .collect();
            let got = ops::argmax(&t).unwrap();
            assert_eq!(got.dtype(), DType::U32);
            assert_eq!(got.to_vec::<u32>().unwrap(), idx, "{}", what("argmax"));
        }
    }
}
backend_tests!(reductions_against_f64 => reductions_against_f64_cpu, reductions_against_f64_gpu, reductions_against_f64_gpu_nosubgroups);

fn nan_ties_and_infinities(device: &Device) {
    // 300: one row per workgroup; 30: one row per invocation
    for (dtype, n) in DType::ALL
        .into_iter()
        .flat_map(|d| [(d, 300usize), (d, 30)])
    {
        let mut x = vec![1.0f32; 4 * n];
        x[17] = 5.0; // row 0: ties at 17 and n - 13 -> first
        x[n - 13] = 5.0;
        x[n + n * 2 / 3] = f32::NAN; // row 1: two NaNs -> first NaN, max NaN
        x[n + n - 3] = f32::NAN;
        x[n + 10] = 9.0;
        x[2 * n..3 * n].fill(f32::NEG_INFINITY); // row 2: all -inf -> index 0
        x[3 * n + n - 1] = f32::INFINITY; // row 3: +inf last
        x[3 * n + 5] = f32::NEG_INFINITY; // sum: inf + -inf = NaN
        let t = tensor(device, &x, &[4, n], dtype);
        assert_eq!(
            ops::argmax(&t).unwrap().to_vec::<u32>().unwrap(),
            vec![17, (n * 2 / 3) as u32, 0, n as u32 - 1],
            "{dtype} {device:?}"
        );
        let m = ops::max(&t).unwrap().to_f32_vec().unwrap();
        assert_eq!(m[0], 5.0);
        assert!(m[1].is_nan());
        assert_eq!(m[2], f32::NEG_INFINITY);
        assert_eq!(m[3], f32::INFINITY);
        let s = ops::sum(&t).unwrap().to_f32_vec().unwrap();
        assert!(s[1].is_nan() && s[3].is_nan());
        assert_eq!(s[2], f32::NEG_INFINITY);
    }
}
backend_tests!(nan_ties_and_infinities => nan_ties_and_infinities_cpu, nan_ties_and_infinities_gpu, nan_ties_and_infinities_gpu_nosubgroups);

fn long_rows(device: &Device) {
    let n = if large() { 1 << 20 } else { 100_003 };
    let x: Vec<f32> = random(n, 77);
    let t = tensor(device, &x, &[1, n], DType::F32);
    let want = x
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
    assert_eq!(
        ops::argmax(&t).unwrap().to_vec::<u32>().unwrap(),
        vec![want.0 as u32]
    );
    let s: f64 = x.iter().map(|&v| v as f64).sum();
    assert_close(
        "long sum",
        &ops::sum(&t).unwrap().to_f32_vec().unwrap(),
        &[s],
        1e-6 * n as f64 * 0.5,
        0.0,
    );
}
backend_tests!(long_rows => long_rows_cpu, long_rows_gpu, long_rows_gpu_nosubgroups);

fn mistakes_are_typed_errors(device: &Device) {
    let e = tensor(device, &[], &[3, 0], DType::F32);
    assert!(matches!(ops::sum(&e).unwrap_err(), Error::Shape { .. }));
    let s = tensor(device, &[1.0], &[], DType::F32);
    assert!(matches!(ops::argmax(&s).unwrap_err(), Error::Shape { .. }));
    let ids = openkern::Tensor::from_slice(device, &[1u32], &[1]).unwrap();
    assert!(matches!(
        ops::max(&ids).unwrap_err(),
        Error::UnsupportedDType { .. }
    ));
    // a [0, n] tensor reduces to an empty [0]
    let none = tensor(device, &[], &[0, 4], DType::F32);
    assert_eq!(ops::sum(&none).unwrap().shape(), &[0]);
}
backend_tests!(mistakes_are_typed_errors => mistakes_are_typed_errors_cpu, mistakes_are_typed_errors_gpu);
