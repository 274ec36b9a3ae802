//! Softmax and log-softmax against an f64 reference on every backend and dtype: odd row
//! lengths (including ones that split 16-bit words across rows), ±1e4 logits, scale,
//! causal and additive masks, fully masked rows, NaN and ±inf.

mod common;
use common::*;
use openkern::shape::{broadcast_strides, contiguous_strides};
use openkern::{ops, DType, Device, Error, Tensor};

struct Case<'a> {
    shape: &'a [usize],
    scale: f32,
    causal: bool,
    mask: Option<(&'a [f32], &'a [usize])>,
}

/// The documented semantics, in f64 after the f32 logit arithmetic the kernels do.
fn reference(x: &[f32], c: &Case, log: bool) -> Vec<f64> {
    let rank = c.shape.len();
    let n = c.shape[rank - 1];
    let q = if rank >= 2 { c.shape[rank - 2] } else { 1 };
    let rows = x.len() / n.max(1);
    let ms = c.mask.map(|(_, s)| broadcast_strides(s, c.shape));
    let xs = contiguous_strides(c.shape);
    let mut out = vec![0f64; x.len()];
    for r in 0..rows {
        let mut l = vec![0f64; n];
        for (j, lj) in l.iter_mut().enumerate() {
            let i = r * n + j;
            let mut v = x[i] * c.scale;
            if let (Some((m, _)), Some(ms)) = (c.mask, &ms) {
                let mi: usize = (0..rank).map(|d| (i / xs[d]) % c.shape[d] * ms[d]).sum();
                v += m[mi];
            }
            if c.causal && (j as i64) > (r % q) as i64 + n as i64 - q as i64 {
                v = f32::NEG_INFINITY;
            }
            *lj = v as f64;
        }
        let row = &mut out[r * n..(r + 1) * n];
        if l.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
            row.fill(f64::NAN);
            continue;
        }
        let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            row.fill(if log { f64::NEG_INFINITY } else { 0.0 });
            continue;
        }
        let s: f64 = l.iter().map(|v| (v - m).exp()).sum();
        for (o, v) in row.iter_mut().zip(&l) {
            *o = if log {
                v - m - s.ln()
            } else {
                (v - m).exp() / s
            };
        }
    }
    out
}

fn check(device: &Device, dtype: DType, x: &[f32], c: &Case, what: &str) {
    let xq = quantize(x, dtype);
    let t = tensor(device, &xq, c.shape, dtype);
    let mq = c.mask.map(|(m, s)| (quantize(m, dtype), s));
    let mt = mq.as_ref().map(|(m, s)| tensor(device, m, s, dtype));
    let opts = ops::SoftmaxOptions {
        scale: c.scale,
        causal: c.causal,
        mask: mt.as_ref(),
    };
    let cq = Case {
        shape: c.shape,
        scale: c.scale,
        causal: c.causal,
        mask: mq.as_ref().map(|(m, s)| (&m[..], *s)),
    };
    let eps = dtype.epsilon();
    // f32: exp and the row sum in f32; 16-bit: plus the output rounding.
    let rtol = if dtype == DType::F32 {
        2e-5
    } else {
        1.01 * eps + 2e-5
    };
    for log in [false, true] {
        let got = if log {
            ops::log_softmax_with(&t, &opts)
        } else {
            ops::softmax_with(&t, &opts)
        }
        .unwrap();
        assert_eq!(got.shape(), c.shape);
        let want = reference(&xq, &cq, log);
        // log-softmax: the f32 subtraction l - max - log s errs by eps·|l - max|.
        let atol = if log {
            1e-5 + 2e-7
                * want
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold(0f64, |a, v| a.max(v.abs()))
        } else if dtype == DType::F16 {
            6e-8
        } else {
            1e-9
        };
        assert_close(
            &format!(
                "{}{what} {:?} {dtype} on {device:?}",
                if log { "log_softmax" } else { "softmax" },
                c.shape
            ),
            &got.to_f32_vec().unwrap(),
            &want,
            atol,
            rtol,
        );
    }
}

const LENGTHS: [usize; 10] = [1, 3, 17, 63, 65, 127, 255, 257, 1000, 4097];

fn rows_of_odd_lengths_against_f64(device: &Device) {
    for dtype in DType::ALL {
        for &n in &LENGTHS {
            // three rows: with odd n the middle row starts mid-word in 16-bit storage
            let shape = [3, n];
            let x: Vec<f32> = random(3 * n, n as u64).iter().map(|v| v * 8.0).collect();
            let c = Case {
                shape: &shape,
                scale: 1.0,
                causal: false,
                mask: None,
            };
            check(device, dtype, &x, &c, "");
        }
    }
}
backend_tests!(rows_of_odd_lengths_against_f64 => rows_of_odd_lengths_against_f64_cpu, rows_of_odd_lengths_against_f64_gpu, rows_of_odd_lengths_against_f64_gpu_nosubgroups);

fn large_logits_and_scale(device: &Device) {
    // ±1e4 logits: exp overflows without the max subtraction; f16 sums overflow at 65504.
    for dtype in DType::ALL {
        for &n in &[65usize, 1000, 4097] {
            let shape = [2, n];
            let x: Vec<f32> = random(2 * n, 7 + n as u64)
                .iter()
                .map(|v| v * 1e4)
                .collect();
            let c = Case {
                shape: &shape,
                scale: 1.0,
                causal: false,
                mask: None,
            };
            check(device, dtype, &x, &c, " ±1e4");
            // nearly equal large logits: every term matters, the sum exceeds f16 range
            let flat: Vec<f32> = random(2 * n, 9).iter().map(|v| 1e4 + v * 4.0).collect();
            check(device, dtype, &flat, &c, " 1e4±4");
            let x: Vec<f32> = random(2 * n, 3).iter().map(|v| v * 30.0).collect();
            let c = Case {
                shape: &shape,
                scale: 0.125,
                causal: false,
                mask: None,
            };
            check(device, dtype, &x, &c, " scale 0.125");
        }
    }
}
backend_tests!(large_logits_and_scale => large_logits_and_scale_cpu, large_logits_and_scale_gpu, large_logits_and_scale_gpu_nosubgroups);

fn causal_and_additive_masks(device: &Device) {
    for dtype in DType::ALL {
        // prefill: q = k, lower triangle; q < k: decode-like, bottom-right aligned;
        // q > k: the first q - k rows see nothing and are fully masked (zeros).
        for &(q, k) in &[(17usize, 17usize), (3, 65), (7, 4), (1, 257)] {
            let shape = [2, q, k];
            let x = random(2 * q * k, (q * k) as u64);
            let c = Case {
                shape: &shape,
                scale: 0.5,
                causal: true,
                mask: None,
            };
            check(device, dtype, &x, &c, " causal");
        }
        // k = 63: one row per workgroup; k = 9: one row per invocation
        for k in [63usize, 9] {
            // additive masks broadcast over batch and heads: [q, k] and [heads, 1, k]
            let shape = [2, 3, 5, k];
            let x = random(2 * 3 * 5 * k, 11);
            let qk: Vec<f32> = random(5 * k, 12)
                .iter()
                .map(|&v| if v < -0.5 { f32::NEG_INFINITY } else { v })
                .collect();
            let c = Case {
                shape: &shape,
                scale: 1.0,
                causal: false,
                mask: Some((&qk, &[5, k])),
            };
            check(device, dtype, &x, &c, " mask[q,k]");
            let hk: Vec<f32> = random(3 * k, 13).iter().map(|v| v * 100.0).collect();
            let c = Case {
                shape: &shape,
                scale: 1.0,
                causal: true,
                mask: Some((&hk, &[3, 1, k])),
            };
            check(device, dtype, &x, &c, " mask[h,1,k]+causal");
            // a mask that hides whole rows: their output is 0 (softmax) / -inf (log)
            let mut hide = vec![0f32; 5 * k];
            hide[k..2 * k].fill(f32::NEG_INFINITY);
            hide[4 * k..].fill(-f32::INFINITY);
            let c = Case {
                shape: &shape,
                scale: 1.0,
                causal: false,
                mask: Some((&hide, &[5, k])),
            };
            check(device, dtype, &x, &c, " fully masked rows");
        }
    }
}
backend_tests!(causal_and_additive_masks => causal_and_additive_masks_cpu, causal_and_additive_masks_gpu, causal_and_additive_masks_gpu_nosubgroups);

fn nan_and_infinity_follow_the_documented_rules(device: &Device) {
    // 5: one row per invocation; 37: one row per workgroup
    for (dtype, n) in DType::ALL.into_iter().flat_map(|d| [(d, 5usize), (d, 37)]) {
        let mut x = random(5 * n, 5);
        x[3] = f32::NAN; // row 0: NaN -> whole row NaN
        x[n + 2] = f32::INFINITY; // row 1: +inf -> whole row NaN
        x[2 * n..3 * n].fill(f32::NEG_INFINITY); // row 2: all -inf -> 0 / -inf
        x[3 * n + 1] = f32::NEG_INFINITY; // row 3: one -inf -> probability 0
        let c = Case {
            shape: &[5, n],
            scale: 1.0,
            causal: false,
            mask: None,
        };
        check(device, dtype, &x, &c, " specials");
        let y = ops::softmax(&tensor(device, &quantize(&x, dtype), &[5, n], dtype))
            .unwrap()
            .to_f32_vec()
            .unwrap();
        assert!(y[..2 * n].iter().all(|v| v.is_nan()), "{device:?} {dtype}");
        assert!(y[2 * n..3 * n].iter().all(|&v| v == 0.0));
        assert_eq!(y[3 * n + 1], 0.0);
    }
}
backend_tests!(nan_and_infinity_follow_the_documented_rules => nan_and_infinity_follow_the_documented_rules_cpu, nan_and_infinity_follow_the_documented_rules_gpu, nan_and_infinity_follow_the_documented_rules_gpu_nosubgroups);

fn vocabulary_sized_rows(device: &Device) {
    let n = if large() { 262_144 * 2 + 3 } else { 262_144 };
    let x: Vec<f32> = random(n, 21).iter().map(|v| v * 20.0).collect();
    let c = Case {
        shape: &[1, n],
        scale: 1.0,
        causal: false,
        mask: None,
    };
    check(device, DType::F32, &x, &c, " vocab");
    if large() {
        for dtype in [DType::F16, DType::BF16] {
            check(device, dtype, &x, &c, " vocab");
        }
    }
}
backend_tests!(vocabulary_sized_rows => vocabulary_sized_rows_cpu, vocabulary_sized_rows_gpu, vocabulary_sized_rows_gpu_nosubgroups);

fn many_rows_fold_the_grid(device: &Device) {
    // more rows than one grid dimension holds (65535): exercises fold_groups
    if !large() {
        return;
    }
    let shape = [70_001, 5];
    let x = random(70_001 * 5, 8);
    let c = Case {
        shape: &shape,
        scale: 1.0,
        causal: true,
        mask: None,
    };
    check(device, DType::F16, &x, &c, " folded grid");
}
backend_tests!(many_rows_fold_the_grid => many_rows_fold_the_grid_cpu, many_rows_fold_the_grid_gpu, many_rows_fold_the_grid_gpu_nosubgroups);

fn mistakes_are_typed_errors(device: &Device) {
    let x = tensor(device, &random(12, 1), &[3, 4], DType::F32);
    for scale in [f32::NAN, -1.0, 0.0, f32::INFINITY] {
        let e = ops::softmax_with(
            &x,
            &ops::SoftmaxOptions {
                scale,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::Argument { name: "scale", .. }), "{e}");
    }
    let bad = tensor(device, &random(5, 1), &[5], DType::F32);
    let e = ops::softmax_with(
        &x,
        &ops::SoftmaxOptions {
            mask: Some(&bad),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert!(e.to_string().contains("last dimension must be 4"), "{e}");
    let half = tensor(device, &random(4, 1), &[4], DType::F16);
    let e = ops::softmax_with(
        &x,
        &ops::SoftmaxOptions {
            mask: Some(&half),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::ParamDType { param: "mask", .. }), "{e}");
    assert!(e.to_string().contains("`.cast(DType::F32)`"), "{e}");
    let ids = Tensor::from_slice(device, &[1u32, 2, 3], &[3]).unwrap();
    assert!(matches!(
        ops::softmax(&ids).unwrap_err(),
        Error::UnsupportedDType { .. }
    ));
    let scalar = tensor(device, &[1.0], &[], DType::F32);
    assert!(matches!(
        ops::softmax(&scalar).unwrap_err(),
        Error::Shape { .. }
    ));
    let empty = tensor(device, &[], &[2, 0], DType::F32);
    assert_eq!(ops::softmax(&empty).unwrap().shape(), &[2, 0]);
}
backend_tests!(mistakes_are_typed_errors => mistakes_are_typed_errors_cpu, mistakes_are_typed_errors_gpu, mistakes_are_typed_errors_gpu_nosubgroups);
