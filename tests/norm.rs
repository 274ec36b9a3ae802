//! Layer norm, RMS norm and the fused residual-add forms against an f64 reference on
//! every backend and dtype, over odd row lengths and rows with a large mean.

mod common;
use common::*;
use openkern::{ops, DType, Device, Error};

fn reference(x: &[f64], n: usize, w: &[f64], b: Option<&[f64]>, eps: f64) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for (row, o) in x.chunks(n).zip(out.chunks_mut(n)) {
        let (mean, denom) = match b {
            Some(_) => {
                let mean = row.iter().sum::<f64>() / n as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
                (mean, (var + eps).sqrt())
            }
            None => (
                0.0,
                (row.iter().map(|v| v * v).sum::<f64>() / n as f64 + eps).sqrt(),
            ),
        };
        for j in 0..n {
            o[j] = (row[j] - mean) / denom * w[j] + b.map_or(0.0, |b| b[j]);
        }
    }
    out
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn run_case(device: &Device, dtype: DType, rows: usize, n: usize, offset: f32, seed: u64) {
    let x = quantize(
        &random(rows * n, seed)
            .iter()
            .map(|v| v * 3.0 + offset)
            .collect::<Vec<_>>(),
        dtype,
    );
    let r = quantize(&random(rows * n, seed + 1), dtype);
    let w = quantize(
        &random(n, seed + 2)
            .iter()
            .map(|v| v + 1.5)
            .collect::<Vec<_>>(),
        dtype,
    );
    let b = quantize(&random(n, seed + 3), dtype);
    let shape = [rows, n];
    let (tx, tr) = (
        tensor(device, &x, &shape, dtype),
        tensor(device, &r, &shape, dtype),
    );
    let (tw, tb) = (
        tensor(device, &w, &[n], dtype),
        tensor(device, &b, &[n], dtype),
    );
    let eps = 1e-5f32;
    let h: Vec<f64> = x.iter().zip(&r).map(|(&a, &c)| (a + c) as f64).collect();
    // f32 statistics: layer norm loses |x|/std digits to the centring (the row's own
    // conditioning: a short row of nearly equal values has a tiny std).
    let cond = x
        .chunks(n)
        .zip(h.chunks(n))
        .map(|(xr, hr)| {
            let c = |r: &[f64]| {
                let mean = r.iter().sum::<f64>() / n as f64;
                let sd =
                    (r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64 + 1e-5).sqrt();
                r.iter().fold(0f64, |a, v| a.max(v.abs())) / sd
            };
            c(&f64s(xr)).max(c(hr))
        })
        .fold(1.0f64, f64::max)
        .max(1.0 + (offset as f64).abs() / 3.0);
    let tol = |cond: f64| {
        let rtol = dtype.epsilon() * 1.01 + 2e-6 * cond;
        let atol = if dtype == DType::F32 {
            2e-6 * cond
        } else {
            2.0 * dtype.epsilon() * cond
        };
        (atol, rtol)
    };
    // RMS norm has no cancellation: only the f32 sum of n squares (error ~ sqrt(n))
    let (atol_r, rtol_r) = tol(1.0 + (n as f64).sqrt() / 64.0);
    let (atol, rtol) = tol(cond);
    let what = |op: &str| format!("{op} [{rows}, {n}] offset {offset} {dtype} on {device:?}");
    let got = ops::rms_norm(&tx, &tw, eps).unwrap();
    assert_close(
        &what("rms_norm"),
        &got.to_f32_vec().unwrap(),
        &reference(&f64s(&x), n, &f64s(&w), None, eps as f64),
        atol_r,
        rtol_r,
    );
    let got = ops::layer_norm(&tx, &tw, &tb, eps).unwrap();
    assert_close(
        &what("layer_norm"),
        &got.to_f32_vec().unwrap(),
        &reference(&f64s(&x), n, &f64s(&w), Some(&f64s(&b)), eps as f64),
        atol,
        rtol,
    );
    let ops::AddNorm { sum: hs, normed: y } = ops::add_rms_norm(&tx, &tr, &tw, eps).unwrap();
    assert_close(
        &what("add_rms_norm h"),
        &hs.to_f32_vec().unwrap(),
        &h,
        0.0,
        dtype.epsilon() * 1.01,
    );
    assert_close(
        &what("add_rms_norm y"),
        &y.to_f32_vec().unwrap(),
        &reference(&h, n, &f64s(&w), None, eps as f64),
        atol_r,
        rtol_r,
    );
    let ops::AddNorm { sum: hs, normed: y } = ops::add_layer_norm(&tx, &tr, &tw, &tb, eps).unwrap();
    assert_close(
        &what("add_layer_norm h"),
        &hs.to_f32_vec().unwrap(),
        &h,
        0.0,
        dtype.epsilon() * 1.01,
    );
    assert_close(
        &what("add_layer_norm y"),
        &y.to_f32_vec().unwrap(),
        &reference(&h, n, &f64s(&w), Some(&f64s(&b)), eps as f64),
        atol,
        rtol,
    );
}

fn norms_against_f64_on_odd_lengths(device: &Device) {
    for dtype in DType::ALL {
        for &n in &[1usize, 3, 17, 63, 65, 127, 255, 257, 1000, 4097] {
            run_case(device, dtype, 3, n, 0.0, n as u64);
        }
        // several CPU tasks of 16 rows and a short last one, each widening its own copy
        // of a 16-bit weight
        run_case(device, dtype, 37, 1000, 0.0, 7);
    }
}
backend_tests!(norms_against_f64_on_odd_lengths => norms_against_f64_on_odd_lengths_cpu, norms_against_f64_on_odd_lengths_gpu, norms_against_f64_on_odd_lengths_gpu_nosubgroups);

fn layer_norm_keeps_precision_under_a_large_mean(device: &Device) {
    // mean 1000, std ~1.7: E[x^2] - E[x]^2 would lose ~6 digits in f32
    run_case(device, DType::F32, 4, 4096, 1000.0, 5);
}
backend_tests!(layer_norm_keeps_precision_under_a_large_mean => layer_norm_keeps_precision_under_a_large_mean_cpu, layer_norm_keeps_precision_under_a_large_mean_gpu, layer_norm_keeps_precision_under_a_large_mean_gpu_nosubgroups);

fn large_rows(device: &Device) {
    if !large() {
        return;
    }
    for dtype in DType::ALL {
        run_case(device, dtype, 70_000, 3, 0.0, 1);
        run_case(device, dtype, 2, 262_147, 0.0, 2);
    }
}
backend_tests!(large_rows => large_rows_cpu, large_rows_gpu, large_rows_gpu_nosubgroups);

fn nan_propagates_to_its_row_only(device: &Device) {
    let mut x = random(2 * 9, 1);
    x[4] = f32::NAN;
    let t = tensor(device, &x, &[2, 9], DType::F32);
    let w = tensor(device, &[1.0; 9], &[9], DType::F32);
    let y = ops::rms_norm(&t, &w, 1e-6).unwrap().to_f32_vec().unwrap();
    assert!(y[..9].iter().all(|v| v.is_nan()));
    assert!(y[9..].iter().all(|v| v.is_finite()));
}
backend_tests!(nan_propagates_to_its_row_only => nan_propagates_to_its_row_only_cpu, nan_propagates_to_its_row_only_gpu);

fn mistakes_are_typed_errors(device: &Device) {
    let x = tensor(device, &random(12, 1), &[3, 4], DType::F32);
    let w = tensor(device, &random(4, 2), &[4], DType::F32);
    for eps in [f32::NAN, -1e-5, f32::INFINITY] {
        let e = ops::rms_norm(&x, &w, eps).unwrap_err();
        assert!(matches!(e, Error::Argument { name: "eps", .. }), "{e}");
    }
    let w3 = tensor(device, &random(3, 2), &[3], DType::F32);
    let e = ops::rms_norm(&x, &w3, 1e-5).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LastDimMismatch {
                name: "weight",
                expected: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("shape [4]"), "{e}");
    let wh = tensor(device, &random(4, 2), &[4], DType::BF16);
    assert!(matches!(
        ops::layer_norm(&x, &w, &wh, 1e-5).unwrap_err(),
        Error::ParamDType { param: "bias", .. }
    ));
    let r = tensor(device, &random(4, 2), &[4], DType::F32);
    assert!(matches!(
        ops::add_rms_norm(&x, &r, &w, 1e-5).unwrap_err(),
        Error::Shape { .. }
    ));
    let none = tensor(device, &[], &[0, 4], DType::F32);
    assert_eq!(ops::rms_norm(&none, &w, 1e-5).unwrap().shape(), &[0, 4]);
    let ops::AddNorm { sum: h, normed: y } = ops::add_rms_norm(&none, &none, &w, 1e-5).unwrap();
    assert_eq!((h.shape(), y.shape()), (&[0, 4][..], &[0, 4][..]));
    let empty = tensor(device, &[], &[3, 0], DType::F32);
    assert!(matches!(
        ops::rms_norm(&empty, &w, 1e-5).unwrap_err(),
        Error::Shape { .. }
    ));
}
backend_tests!(mistakes_are_typed_errors => mistakes_are_typed_errors_cpu, mistakes_are_typed_errors_gpu);

#[test]
fn reused_host_buffers_carry_no_stale_values() {
    // CPU outputs of >= 1 MiB come from a pool of dropped buffers: run the same shape
    // twice on different data and check the second result, while the first is alive and
    // after it is dropped.
    let device = openkern::Device::cpu();
    let (m, n) = (512, 1024);
    let w = tensor(&device, &vec![1.0; n], &[n], DType::F32);
    let mut keep = Vec::new();
    for seed in 0..4u64 {
        let x = random(m * n, seed);
        let t = tensor(&device, &x, &[m, n], DType::F32);
        let y = ops::rms_norm(&t, &w, 1e-6).unwrap();
        let want = reference(&f64s(&x), n, &vec![1.0; n], None, 1e-6);
        assert_close(
            &format!("pooled rms_norm seed {seed}"),
            &y.to_f32_vec().unwrap(),
            &want,
            1e-6,
            1e-5,
        );
        let s = ops::softmax(&t).unwrap().to_f32_vec().unwrap();
        assert!((s[..n].iter().map(|&v| v as f64).sum::<f64>() - 1.0).abs() < 1e-4);
        if seed % 2 == 0 {
            keep.push(y);
        }
    }
    device.trim_pool();
}

fn f64_layer_norm(h: &[f64], n: usize, w: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
    h.chunks(n)
        .flat_map(|r| {
            let mean = r.iter().sum::<f64>() / n as f64;
            let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            r.iter()
                .zip(w.iter().zip(b))
                .map(move |(v, (wj, bj))| (v - mean) * rstd * wj + bj)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Parameters may be f32 or x's dtype; the post-norm forms equal the normed half of
/// the fused forms; other parameter dtypes are typed errors naming the cast.
fn params_f32_or_activation_dtype(device: &Device) {
    for dtype in DType::ALL {
        let (rows, n) = (5, 67);
        let x = quantize(&random(rows * n, 1), dtype);
        let r = quantize(&random(rows * n, 2), dtype);
        let w: Vec<f32> = random(n, 3).iter().map(|v| 1.0 + v).collect();
        let b = random(n, 4);
        let tx = tensor(device, &x, &[rows, n], dtype);
        let tr = tensor(device, &r, &[rows, n], dtype);
        let h: Vec<f64> = x
            .iter()
            .zip(&r)
            .map(|(&a, &c)| a as f64 + c as f64)
            .collect();
        for pdt in [DType::F32, dtype] {
            let wq = quantize(&w, pdt);
            let bq = quantize(&b, pdt);
            let tw = tensor(device, &wq, &[n], pdt);
            let tb = tensor(device, &bq, &[n], pdt);
            let want = f64_layer_norm(&h, n, &f64s(&wq), &f64s(&bq), 1e-5);
            // the GPU rounds an f32 parameter to x's dtype: one more rounding
            let (atol, rtol) = (4.0 * dtype.epsilon() + 1e-5, 3.0 * dtype.epsilon());
            let what = format!("add_layer_norm_post {dtype} x, {pdt} params on {device:?}");
            let post = ops::add_layer_norm_post(&tx, &tr, &tw, &tb, 1e-5).unwrap();
            assert_close(&what, &post.to_f32_vec().unwrap(), &want, atol, rtol);
            let fused = ops::add_layer_norm(&tx, &tr, &tw, &tb, 1e-5).unwrap();
            assert_eq!(
                fused.normed.to_f32_vec().unwrap(),
                post.to_f32_vec().unwrap(),
                "{what}: post form equals the fused form's normed half"
            );
            let rms = ops::add_rms_norm_post(&tx, &tr, &tw, 1e-5).unwrap();
            let fused = ops::add_rms_norm(&tx, &tr, &tw, 1e-5).unwrap();
            assert_eq!(
                rms.to_f32_vec().unwrap(),
                fused.normed.to_f32_vec().unwrap()
            );
            assert_eq!(rms.dtype(), dtype);
        }
        for other in DType::ALL {
            if other == dtype || other == DType::F32 {
                continue;
            }
            let tw = tensor(device, &w, &[n], other);
            let e = ops::rms_norm(&tx, &tw, 1e-5).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::ParamDType {
                        param: "weight",
                        ..
                    }
                ),
                "{e}"
            );
            assert!(e.to_string().contains(".cast(DType::F32)"), "{e}");
        }
    }
}
backend_tests!(params_f32_or_activation_dtype => params_f32_or_activation_dtype_cpu, params_f32_or_activation_dtype_gpu, params_f32_or_activation_dtype_gpu_nosubgroups);

/// `x / max(‖x‖, eps)` against f64, odd lengths, zero rows, every dtype.
fn l2_normalize_rows(device: &Device) {
    for dtype in DType::ALL {
        for &n in &[1usize, 3, 17, 384, 1000] {
            let rows = 4;
            let mut x = quantize(&random(rows * n, n as u64), dtype);
            for v in &mut x[..n] {
                *v = 0.0; // an all-zero row: divided by eps, stays 0
            }
            let t = tensor(device, &x, &[2, 2, n], dtype);
            let got = ops::l2_normalize(&t, 1e-12).unwrap();
            assert_eq!(got.shape(), &[2, 2, n]);
            let want: Vec<f64> = x
                .chunks(n)
                .flat_map(|r| {
                    let norm = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                    r.iter()
                        .map(move |&v| v as f64 / norm.max(1e-12))
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_close(
                &format!("l2_normalize [{rows}, {n}] {dtype} on {device:?}"),
                &got.to_f32_vec().unwrap(),
                &want,
                1e-6,
                dtype.epsilon() * 1.01 + 1e-6,
            );
        }
    }
    let t = tensor(device, &[1.0], &[1], DType::F32);
    assert!(matches!(
        ops::l2_normalize(&t, -1.0).unwrap_err(),
        Error::Argument { name: "eps", .. }
    ));
}
backend_tests!(l2_normalize_rows => l2_normalize_rows_cpu, l2_normalize_rows_gpu, l2_normalize_rows_gpu_nosubgroups);

fn special_values_make_the_whole_row_nan(device: &Device) {
    // The second row is finite and must stay so; the first holds one special value (or
    // squares that overflow f32) and must come out NaN in every element, for every norm.
    // rms_norm([1, inf, -2, 0.5]) gave [0, NaN, -0, 0] before.
    let n = 4;
    let specials = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 3e19];
    for (case, &s) in specials.iter().enumerate() {
        for dtype in DType::ALL {
            if s == 3e19 && dtype == DType::F16 {
                continue; // beyond f16's range: it is ∞ there, covered above
            }
            let x = [1.0, s, -2.0, 0.5, 1.0, 2.0, -3.0, 0.25];
            let t = tensor(device, &x, &[2, n], dtype);
            let zero = tensor(device, &[0.0; 8], &[2, n], dtype);
            let w = tensor(device, &[1.0; 4], &[n], DType::F32);
            let b = tensor(device, &[0.0; 4], &[n], DType::F32);
            let results = [
                ("rms_norm", ops::rms_norm(&t, &w, 1e-6).unwrap()),
                ("layer_norm", ops::layer_norm(&t, &w, &b, 1e-6).unwrap()),
                (
                    "add_rms_norm",
                    ops::add_rms_norm(&t, &zero, &w, 1e-6).unwrap().normed,
                ),
                (
                    "add_layer_norm",
                    ops::add_layer_norm(&t, &zero, &w, &b, 1e-6).unwrap().normed,
                ),
                ("l2_normalize", ops::l2_normalize(&t, 1e-12).unwrap()),
            ];
            for (op, y) in results {
                let y = y.to_f32_vec().unwrap();
                assert!(
                    y[..n].iter().all(|v| v.is_nan()),
                    "{op} {dtype} case {case} ({s}) on {device:?}: row {:?} should be all NaN",
                    &y[..n]
                );
                assert!(
                    y[n..].iter().all(|v| v.is_finite()),
                    "{op} {dtype} case {case} on {device:?}: the finite row became {:?}",
                    &y[n..]
                );
            }
        }
    }
}
backend_tests!(special_values_make_the_whole_row_nan => special_values_make_the_whole_row_nan_cpu, special_values_make_the_whole_row_nan_gpu, special_values_make_the_whole_row_nan_gpu_nosubgroups);

/// Outputs of 16 MiB or more take the CPU's streamed-store path (`cpu::norm`), with
/// rows of odd length so every row starts at a different alignment: each norm and
/// l2_normalize against f64 there, in every float dtype. CPU only: it is that backend's
/// path, and lavapipe would spend long on these sizes.
#[test]
fn cpu_streamed_outputs_on_odd_rows() {
    let device = Device::cpu();
    let n = 4099;
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        // just over 16 MiB for one output of this dtype
        let rows = (16usize << 20) / (n * dtype.size_in_bytes()) + 1;
        run_case(&device, dtype, rows, n, 0.5, 11);
        let x = quantize(&random(rows * n, 12), dtype);
        let got = ops::l2_normalize(&tensor(&device, &x, &[rows, n], dtype), 1e-12).unwrap();
        let want: Vec<f64> = x
            .chunks(n)
            .flat_map(|r| {
                let norm = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                r.iter().map(move |&v| v as f64 / norm).collect::<Vec<_>>()
            })
            .collect();
        assert_close(
            &format!("l2_normalize [{rows}, {n}] {dtype} on the CPU"),
            &got.to_f32_vec().unwrap(),
            &want,
            1e-6,
            dtype.epsilon() * 1.01 + 1e-6,
        );
    }
}
