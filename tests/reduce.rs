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

/// sum, mean, max, min, argmax over every dimension of a rank-3 tensor, with and
/// without keepdim, against f64; NaN and ties along a strided axis.
fn reductions_over_any_dim(device: &Device) {
    let shape = [3usize, 17, 5];
    for dtype in DType::ALL {
        let x = quantize(
            &random(3 * 17 * 5, 11)
                .iter()
                .map(|v| (v * 8.0).round())
                .collect::<Vec<_>>(),
            dtype,
        );
        let t = tensor(device, &x, &shape, dtype);
        let at = |i: usize, j: usize, k: usize| x[(i * 17 + j) * 5 + k] as f64;
        for dim in 0..3 {
            let n = shape[dim];
            let mut out_shape = shape.to_vec();
            out_shape[dim] = 1;
            let (o1, o2) = (out_shape[1], out_shape[2]);
            let outs: Vec<[usize; 3]> = (0..out_shape[0])
                .flat_map(|i| (0..o1).flat_map(move |j| (0..o2).map(move |k| [i, j, k])))
                .collect();
            let line = |o: &[usize; 3]| -> Vec<f64> {
                (0..n)
                    .map(|r| {
                        let mut c = *o;
                        c[dim] = r;
                        at(c[0], c[1], c[2])
                    })
                    .collect()
            };
            let what = |op: &str| format!("{op} dim {dim} {dtype} on {device:?}");
            let sums: Vec<f64> = outs.iter().map(|o| line(o).iter().sum()).collect();
            let means: Vec<f64> = sums.iter().map(|s| s / n as f64).collect();
            let maxes: Vec<f64> = outs
                .iter()
                .map(|o| line(o).into_iter().fold(f64::MIN, f64::max))
                .collect();
            let mins: Vec<f64> = outs
                .iter()
                .map(|o| line(o).into_iter().fold(f64::MAX, f64::min))
                .collect();
            let args: Vec<u32> = outs
                .iter()
                .map(|o| {
                    let l = line(o);
                    let m = l.iter().cloned().fold(f64::MIN, f64::max);
                    l.iter().position(|&v| v == m).unwrap() as u32
                })
                .collect();
            let got = ops::sum_dim(&t, dim, true).unwrap();
            assert_eq!(got.shape(), &out_shape[..]);
            let tol = dtype.epsilon() * 1.01;
            assert_close(&what("sum"), &got.to_f32_vec().unwrap(), &sums, 1e-5, tol);
            let got = ops::mean_dim(&t, dim, false).unwrap();
            let mut dropped = shape.to_vec();
            dropped.remove(dim);
            assert_eq!(got.shape(), &dropped[..]);
            assert_close(&what("mean"), &got.to_f32_vec().unwrap(), &means, 1e-6, tol);
            let got = ops::max_dim(&t, dim, false).unwrap().to_f32_vec().unwrap();
            assert_close(&what("max"), &got, &maxes, 0.0, 0.0);
            let got = ops::min_dim(&t, dim, true).unwrap().to_f32_vec().unwrap();
            assert_close(&what("min"), &got, &mins, 0.0, 0.0);
            let got = ops::argmax_dim(&t, dim, false).unwrap();
            assert_eq!(got.dtype(), DType::U32);
            assert_eq!(got.to_vec::<u32>().unwrap(), args, "{}", what("argmax"));
        }
        // NaN along a strided axis: max/min NaN, argmax the first NaN
        let mut y = vec![1.0f32, 2.0, 3.0, 3.0, 0.0, 5.0];
        y[3] = f32::NAN; // row 1, column 1 of [3, 2]
        let t = tensor(device, &y, &[3, 2], dtype);
        let mx = ops::max_dim(&t, 0, false).unwrap().to_f32_vec().unwrap();
        assert_eq!(mx[0], 3.0);
        assert!(mx[1].is_nan());
        let mn = ops::min_dim(&t, 0, false).unwrap().to_f32_vec().unwrap();
        assert_eq!(mn[0], 0.0);
        assert!(mn[1].is_nan());
        let am = ops::argmax_dim(&t, 0, false).unwrap();
        assert_eq!(am.to_vec::<u32>().unwrap(), vec![1, 1]);
    }
    let t = tensor(device, &random(6, 1), &[2, 3], DType::F32);
    let e = ops::sum_dim(&t, 2, false).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}
backend_tests!(reductions_over_any_dim => reductions_over_any_dim_cpu, reductions_over_any_dim_gpu, reductions_over_any_dim_gpu_nosubgroups);
