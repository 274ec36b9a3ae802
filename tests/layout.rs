//! permute / transpose / concat: exact copies on every backend and dtype, including
//! 16-bit tensors whose pieces start at odd offsets.

mod common;
use common::*;
use openkern::shape::contiguous_strides;
use openkern::Device;
use openkern::{ops, DType, Error};

fn permuted(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f64> {
    let xs = contiguous_strides(shape);
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let os = contiguous_strides(&out);
    (0..x.len())
        .map(|i| {
            let src: usize = (0..out.len())
                .map(|k| (i / os[k]) % out[k] * xs[perm[k]])
                .sum();
            x[src] as f64
        })
        .collect()
}

fn permutes_exactly(device: &Device) {
    let cases: &[(&[usize], &[usize])] = &[
        (&[3, 5], &[1, 0]),
        (&[2, 3, 5], &[2, 0, 1]),
        (&[2, 3, 4, 5], &[0, 2, 1, 3]),
        (&[17, 1, 63], &[2, 1, 0]),
        (&[1, 2, 1, 3, 1, 5, 1, 7], &[7, 6, 5, 4, 3, 2, 1, 0]),
    ];
    for dtype in DType::ALL {
        for &(shape, perm) in cases {
            let n: usize = shape.iter().product();
            let x = quantize(&random(n, n as u64), dtype);
            let got = ops::permute(&tensor(device, &x, shape, dtype), perm).unwrap();
            let want_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            assert_eq!(got.shape(), &want_shape[..]);
            assert_close(
                &format!("permute {shape:?} {perm:?} {dtype} on {device:?}"),
                &got.to_f32_vec().unwrap(),
                &permuted(&x, shape, perm),
                0.0,
                0.0,
            );
        }
        let x = quantize(&random(6 * 7, 2), dtype);
        let t = ops::transpose(&tensor(device, &x, &[6, 7], dtype), 0, 1).unwrap();
        assert_close(
            "transpose",
            &t.to_f32_vec().unwrap(),
            &permuted(&x, &[6, 7], &[1, 0]),
            0.0,
            0.0,
        );
    }
}
backend_tests!(permutes_exactly => permutes_exactly_cpu, permutes_exactly_gpu);

fn concatenates_exactly(device: &Device) {
    for dtype in DType::ALL {
        // odd pieces: in 16-bit storage the second and third start mid-word
        for (dim, shapes) in [
            (0usize, vec![vec![3usize, 5], vec![1, 5], vec![2, 5]]),
            (1, vec![vec![3, 3], vec![3, 1], vec![3, 4]]),
            (2, vec![vec![2, 3, 1], vec![2, 3, 2], vec![2, 3, 3]]),
            (1, vec![vec![2, 0, 3], vec![2, 5, 3]]),
        ] {
            let data: Vec<Vec<f32>> = shapes
                .iter()
                .enumerate()
                .map(|(k, s)| quantize(&random(s.iter().product(), k as u64 + 10), dtype))
                .collect();
            let ts: Vec<_> = data
                .iter()
                .zip(&shapes)
                .map(|(d, s)| tensor(device, d, s, dtype))
                .collect();
            let refs: Vec<_> = ts.iter().collect();
            let got = ops::concat(&refs, dim).unwrap();
            let outer: usize = shapes[0][..dim].iter().product();
            let mut want = Vec::new();
            for o in 0..outer {
                for (d, s) in data.iter().zip(&shapes) {
                    let block: usize = s[dim..].iter().product();
                    want.extend(d[o * block..(o + 1) * block].iter().map(|&v| v as f64));
                }
            }
            assert_close(
                &format!("concat dim {dim} {shapes:?} {dtype} on {device:?}"),
                &got.to_f32_vec().unwrap(),
                &want,
                0.0,
                0.0,
            );
        }
    }
}
backend_tests!(concatenates_exactly => concatenates_exactly_cpu, concatenates_exactly_gpu);

fn mistakes_are_typed_errors(device: &Device) {
    let a = tensor(device, &random(6, 1), &[2, 3], DType::F32);
    assert!(matches!(
        ops::permute(&a, &[0, 0]).unwrap_err(),
        Error::Shape { .. }
    ));
    assert!(matches!(
        ops::permute(&a, &[1]).unwrap_err(),
        Error::Shape { .. }
    ));
    assert!(matches!(
        ops::transpose(&a, 0, 2).unwrap_err(),
        Error::Shape { .. }
    ));
    let b = tensor(device, &random(4, 1), &[2, 2], DType::F32);
    assert!(ops::concat(&[&a, &b], 1).is_ok());
    let e = ops::concat(&[&a, &b], 0).unwrap_err();
    assert!(e.to_string().contains("except 0"), "{e}");
    assert!(matches!(
        ops::concat(&[], 0).unwrap_err(),
        Error::Shape { .. }
    ));
    let h = tensor(device, &random(6, 1), &[2, 3], DType::F16);
    assert!(matches!(
        ops::concat(&[&a, &h], 0).unwrap_err(),
        Error::DTypeMismatch { .. }
    ));
}
backend_tests!(mistakes_are_typed_errors => mistakes_are_typed_errors_cpu, mistakes_are_typed_errors_gpu);
