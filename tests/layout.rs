//! permute / transpose / concat: exact copies on every backend and dtype, including
//! 16-bit tensors whose pieces start at odd offsets. narrow / slice / split / chunk:
//! exact on every backend and dtype (u32 included), views where the block is contiguous,
//! and views fed into ops give what the copied input gives.
// one-range arrays are what `ops::slice` takes for the leading dimension
#![allow(clippy::single_range_in_vec_init)]

mod common;
use common::*;
use openkern::ops::attention::AttentionOptions;
use openkern::shape::contiguous_strides;
use openkern::{ops, DType, Error};
use openkern::{Device, Tensor};
use std::ops::Range;

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

/// Test data for `dtype`: floats rounded through it, or for u32 values that span the
/// whole range (bit patterns of NaNs and denormals included, so a float path would show).
fn data(n: usize, seed: u64, dtype: DType) -> Vec<f64> {
    if dtype == DType::U32 {
        let special = [0u32, 1, 0x7fc0_0001, 0xffff_ffff, 0x0000_0001, 0x8000_0000];
        return (0..n)
            .map(|i| {
                let h = (i as u64 + seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
                if i % 5 == 0 {
                    special[(h % 6) as usize] as f64
                } else {
                    h as u32 as f64
                }
            })
            .collect();
    }
    quantize(&random(n, seed), dtype)
        .into_iter()
        .map(f64::from)
        .collect()
}

fn make(device: &Device, values: &[f64], shape: &[usize], dtype: DType) -> Tensor {
    if dtype == DType::U32 {
        let v: Vec<u32> = values.iter().map(|&x| x as u32).collect();
        return Tensor::from_slice(device, &v, shape).unwrap();
    }
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    tensor(device, &v, shape, dtype)
}

/// Exact contents, u32 read as u32.
fn read(t: &Tensor) -> Vec<f64> {
    if t.dtype() == DType::U32 {
        return t
            .to_vec::<u32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
    }
    t.to_f32_vec().unwrap().into_iter().map(f64::from).collect()
}

fn assert_exact(what: &str, t: &Tensor, want: &[f64]) {
    let got = read(t);
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: element {i} is {g}, want {w}"
        );
    }
}

/// The f64 reference of a block: `ranges` over the leading dimensions of `shape`.
fn block_ref(x: &[f64], shape: &[usize], ranges: &[Range<usize>]) -> (Vec<usize>, Vec<f64>) {
    let strides = contiguous_strides(shape);
    let mut out_shape = shape.to_vec();
    let mut starts = vec![0; shape.len()];
    for (d, r) in ranges.iter().enumerate() {
        out_shape[d] = r.len();
        starts[d] = r.start;
    }
    let n: usize = out_shape.iter().product();
    let os = contiguous_strides(&out_shape);
    let v = (0..n)
        .map(|i| {
            let src: usize = (0..shape.len())
                .map(|d| ((i / os[d]) % out_shape[d] + starts[d]) * strides[d])
                .sum();
            x[src]
        })
        .collect();
    (out_shape, v)
}

fn narrow_ranges(shape: &[usize], dim: usize, start: usize, len: usize) -> Vec<Range<usize>> {
    let mut r: Vec<Range<usize>> = shape[..dim].iter().map(|&s| 0..s).collect();
    r.push(start..start + len);
    r
}

fn narrows_every_dim_exactly(device: &Device) {
    for dtype in DType::ALL_WITH_INDEX {
        for shape in [
            vec![5usize, 7, 3],
            vec![1, 9, 5],
            vec![17],
            vec![2, 3, 1, 5],
        ] {
            let n: usize = shape.iter().product();
            let x = data(n, n as u64, dtype);
            let t = make(device, &x, &shape, dtype);
            for dim in 0..shape.len() {
                let size = shape[dim];
                for (start, len) in [
                    (0, size),
                    (1, size - 1),
                    (size / 2, 1),
                    (size - 1, 1),
                    (2.min(size), 0),
                ] {
                    let got = ops::narrow(&t, dim, start, len).unwrap();
                    let (want_shape, want) =
                        block_ref(&x, &shape, &narrow_ranges(&shape, dim, start, len));
                    let what =
                        format!("narrow {shape:?} dim {dim} {start}+{len} {dtype} on {device:?}");
                    assert_eq!(got.shape(), &want_shape[..], "{what}");
                    assert_eq!(
                        got.size_in_bytes(),
                        want.len() * dtype.size_in_bytes(),
                        "{what}"
                    );
                    assert_exact(&what, &got, &want);
                    // a contiguous block is a view on the CPU (always) and on every backend
                    // when it starts at x's start
                    let outer: usize = shape[..dim].iter().product();
                    let contiguous = outer == 1 || len == size;
                    if contiguous && (device.is_cpu() || start == 0) && len > 0 {
                        assert!(got.shares_storage_with(&t), "{what}: not a view");
                        let inner: usize = shape[dim + 1..].iter().product();
                        assert_eq!(got.offset(), start * inner, "{what}");
                    }
                    if !contiguous && len > 0 && len < size {
                        assert!(
                            !got.shares_storage_with(&t),
                            "{what}: a strided block must be a copy"
                        );
                    }
                }
            }
        }
    }
}
backend_tests!(narrows_every_dim_exactly => narrows_every_dim_exactly_cpu, narrows_every_dim_exactly_gpu);

fn slices_leading_dims(device: &Device) {
    let shape = [4usize, 5, 6];
    for dtype in DType::ALL_WITH_INDEX {
        let x = data(120, 3, dtype);
        let t = make(device, &x, &shape, dtype);
        let cases: Vec<Vec<Range<usize>>> = vec![
            vec![],
            vec![1..3],
            vec![2..3, 1..4],
            vec![0..4, 0..5, 2..5],
            vec![1..2, 2..3, 0..6],
            vec![0..4, 3..3],
            vec![1..3, 0..5, 5..6],
        ];
        for ranges in cases {
            let got = ops::slice(&t, &ranges).unwrap();
            let (want_shape, want) = block_ref(&x, &shape, &ranges);
            let what = format!("slice {ranges:?} {dtype} on {device:?}");
            assert_eq!(got.shape(), &want_shape[..], "{what}");
            assert_exact(&what, &got, &want);
        }
    }
}
backend_tests!(slices_leading_dims => slices_leading_dims_cpu, slices_leading_dims_gpu);

/// A fused QKV projection `[tokens, 3 * hidden]` split along the last dimension, a
/// gate-up `[tokens, 2 * ffn]` chunked in two, and a stacked weight split along dim 0.
fn splits_fused_projections(device: &Device) {
    for dtype in DType::ALL_WITH_INDEX {
        let (tokens, hidden) = (13usize, 20usize);
        let x = data(tokens * 3 * hidden, 5, dtype);
        let qkv = make(device, &x, &[tokens, 3 * hidden], dtype);
        let parts = ops::split(&qkv, &[hidden; 3], 1).unwrap();
        let chunks = ops::chunk(&qkv, 3, 1).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(chunks.len(), 3);
        for (i, (p, c)) in parts.iter().zip(&chunks).enumerate() {
            let (_, want) = block_ref(
                &x,
                &[tokens, 3 * hidden],
                &[0..tokens, i * hidden..(i + 1) * hidden],
            );
            assert_exact(
                &format!("qkv split part {i} {dtype} on {device:?}"),
                p,
                &want,
            );
            assert_exact(
                &format!("qkv chunk part {i} {dtype} on {device:?}"),
                c,
                &want,
            );
            assert_eq!(p.shape(), &[tokens, hidden]);
        }
        let ffn = 17;
        let g = data(tokens * 2 * ffn, 6, dtype);
        let gate_up = make(device, &g, &[tokens, 2 * ffn], dtype);
        let halves = ops::chunk(&gate_up, 2, 1).unwrap();
        for (i, h) in halves.iter().enumerate() {
            let (_, want) = block_ref(&g, &[tokens, 2 * ffn], &[0..tokens, i * ffn..(i + 1) * ffn]);
            assert_exact(&format!("gate-up half {i} {dtype} on {device:?}"), h, &want);
        }
        // a stacked weight split along dimension 0: contiguous parts
        let w = data(2 * ffn * hidden, 7, dtype);
        let stacked = make(device, &w, &[2 * ffn, hidden], dtype);
        let ws = ops::split(&stacked, &[ffn, ffn], 0).unwrap();
        for (i, p) in ws.iter().enumerate() {
            assert_exact(
                &format!("stacked weight part {i} {dtype} on {device:?}"),
                p,
                &w[i * ffn * hidden..(i + 1) * ffn * hidden],
            );
            if device.is_cpu() {
                assert!(p.shares_storage_with(&stacked));
            }
        }
        // uneven chunks follow PyTorch: ceil(size / n) each, the last smaller
        let five = make(device, &data(5 * 2, 8, dtype), &[5, 2], dtype);
        let sizes: Vec<usize> = ops::chunk(&five, 4, 0)
            .unwrap()
            .iter()
            .map(|t| t.shape()[0])
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
        let empty = make(device, &[], &[0, 3], dtype);
        let parts = ops::chunk(&empty, 3, 0).unwrap();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.shape() == [0, 3]));
    }
}
backend_tests!(splits_fused_projections => splits_fused_projections_cpu, splits_fused_projections_gpu);

fn views_of_views_compose(device: &Device) {
    for dtype in DType::ALL_WITH_INDEX {
        let shape = [6usize, 7, 5];
        let x = data(210, 9, dtype);
        let t = make(device, &x, &shape, dtype);
        let a = ops::narrow(&t, 0, 1, 4).unwrap(); // [4, 7, 5] view
        let b = ops::narrow(&a, 0, 2, 2).unwrap(); // rows 3..5 of x
        let (_, want) = block_ref(&x, &shape, &[3..5]);
        assert_exact(&format!("view of a view {dtype} on {device:?}"), &b, &want);
        let c = ops::narrow(&b, 1, 2, 3).unwrap(); // strided: x[3:5, 2:5]
        let (_, want) = block_ref(&x, &shape, &[3..5, 2..5]);
        assert_exact(
            &format!("strided block of a view {dtype} on {device:?}"),
            &c,
            &want,
        );
        let d = ops::slice(&ops::narrow(&b, 0, 1, 1).unwrap(), &[0..1, 4..5]).unwrap();
        let (_, want) = block_ref(&x, &shape, &[4..5, 4..5]);
        assert_exact(
            &format!("slice of a view of a view {dtype} on {device:?}"),
            &d,
            &want,
        );
        // reshape of a view keeps its offset; the view outlives its parent handles
        let r = b.reshape(&[14, 5]).unwrap();
        drop((t, a));
        let (_, want) = block_ref(&x, &shape, &[3..5]);
        assert_exact(&format!("reshaped view {dtype} on {device:?}"), &r, &want);
        let e = ops::narrow(&r, 0, 3, 4).unwrap();
        let (_, want) = block_ref(&x, &[42, 5], &[24..28]);
        assert_exact(
            &format!("view of a reshaped view {dtype} on {device:?}"),
            &e,
            &want,
        );
        // a copy of a view moves to another device exactly
        let cpu = e.to_device(&Device::cpu()).unwrap();
        assert_exact("to_device of a view", &cpu, &want);
    }
}
backend_tests!(views_of_views_compose => views_of_views_compose_cpu, views_of_views_compose_gpu);

/// A block starting at an odd 16-bit element (mid-word): exact, and fed into an op.
fn odd_16bit_offsets(device: &Device) {
    for dtype in [DType::F16, DType::BF16] {
        let x = data(7 * 3, 11, dtype);
        let t = make(device, &x, &[7, 3], dtype);
        for start in [1usize, 3, 4] {
            let v = ops::narrow(&t, 0, start, 3).unwrap();
            let want = &x[start * 3..(start + 3) * 3];
            assert_exact(
                &format!("{dtype} view at element {} on {device:?}", start * 3),
                &v,
                want,
            );
            let doubled = ops::add(&v, &v).unwrap();
            let want2: Vec<f64> = want.iter().map(|w| 2.0 * w).collect();
            assert_close(
                &format!("add of an odd {dtype} view on {device:?}"),
                &doubled.to_f32_vec().unwrap(),
                &want2,
                0.0,
                0.0,
            );
        }
        let odd = ops::narrow(&t, 1, 1, 1).unwrap(); // column 1: every element mid-word
        let (_, want) = block_ref(&x, &[7, 3], &[0..7, 1..2]);
        assert_exact(&format!("{dtype} column on {device:?}"), &odd, &want);
    }
}
backend_tests!(odd_16bit_offsets => odd_16bit_offsets_cpu, odd_16bit_offsets_gpu);

/// The same data as a fresh tensor (no shared storage).
fn copied(t: &Tensor) -> Tensor {
    let c = Tensor::from_f32(t.device(), &t.to_f32_vec().unwrap(), t.shape(), t.dtype()).unwrap();
    assert!(!c.shares_storage_with(t));
    c
}

fn same(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    let want: Vec<f64> = b.to_f32_vec().unwrap().into_iter().map(f64::from).collect();
    assert_close(what, &a.to_f32_vec().unwrap(), &want, 0.0, 0.0);
}

/// Views (at a 1 KiB offset, so GPUs bind them in place, and at an unaligned one) fed
/// into matmul, linear, softmax, rms_norm and attention give what the copied input gives.
fn views_feed_ops_like_copies(device: &Device) {
    for dtype in DType::ALL {
        let cols = 64;
        let big = make(device, &data(40 * cols, 21, dtype), &[40, cols], dtype);
        // 16 rows of 64 elements: 2 or 4 KiB, a multiple of any storage alignment
        for start in [16usize, 1] {
            let what = |op: &str| format!("{op} of a view at row {start}, {dtype} on {device:?}");
            let x = ops::narrow(&big, 0, start, 17).unwrap();
            if start == 16 {
                assert!(x.shares_storage_with(&big), "{}", what("aligned narrow"));
                assert_eq!(x.byte_offset(), 16 * cols * dtype.size_in_bytes());
            }
            let xc = copied(&x);
            same(
                &what("softmax"),
                &ops::softmax(&x).unwrap(),
                &ops::softmax(&xc).unwrap(),
            );
            let w = make(device, &data(cols, 22, dtype), &[cols], dtype);
            same(
                &what("rms_norm"),
                &ops::rms_norm(&x, &w, 1e-5).unwrap(),
                &ops::rms_norm(&xc, &w, 1e-5).unwrap(),
            );
            // a weight that is itself a view: two views of one stacked weight must not
            // share a cached widened copy
            let stacked = make(device, &data(2 * 48 * cols, 23, dtype), &[96, cols], dtype);
            let halves = ops::chunk(&stacked, 2, 0).unwrap();
            for (i, h) in halves.iter().enumerate() {
                let hc = copied(h);
                same(
                    &what(&format!("linear with weight half {i}")),
                    &ops::linear(&x, h, None, None).unwrap(),
                    &ops::linear(&xc, &hc, None, None).unwrap(),
                );
            }
            let b = ops::narrow(&big, 0, 8, 16)
                .unwrap()
                .reshape(&[cols, 16])
                .unwrap();
            let bc = copied(&b);
            same(
                &what("matmul"),
                &ops::matmul(&x, &b).unwrap(),
                &ops::matmul(&xc, &bc).unwrap(),
            );
        }
        // q, k, v as views of one stacked [3, batch, heads, len, dim] tensor
        let (batch, heads, len, dim) = (1, 2, 9, 16);
        let per = batch * heads * len * dim;
        let stacked = make(
            device,
            &data(3 * per, 24, dtype),
            &[3, batch, heads, len, dim],
            dtype,
        );
        let qkv: Vec<Tensor> = ops::chunk(&stacked, 3, 0)
            .unwrap()
            .into_iter()
            .map(|t| t.reshape(&[batch, heads, len, dim]).unwrap())
            .collect();
        let qkvc: Vec<Tensor> = qkv.iter().map(copied).collect();
        let o = AttentionOptions {
            causal: true,
            ..Default::default()
        };
        same(
            &format!("attention of views, {dtype} on {device:?}"),
            &ops::attention(&qkv[0], &qkv[1], &qkv[2], &o).unwrap(),
            &ops::attention(&qkvc[0], &qkvc[1], &qkvc[2], &o).unwrap(),
        );
    }
}
backend_tests!(views_feed_ops_like_copies => views_feed_ops_like_copies_cpu, views_feed_ops_like_copies_gpu);

fn view_mistakes_are_typed_errors(device: &Device) {
    let x = tensor(device, &random(12, 1), &[3, 4], DType::F32);
    let e = ops::narrow(&x, 2, 0, 1).unwrap_err();
    assert!(
        matches!(e, Error::Shape { .. }) && e.to_string().contains("pass a dim below 2"),
        "{e}"
    );
    let e = ops::narrow(&x, 1, 3, 2).unwrap_err();
    assert!(
        matches!(
            e,
            Error::RangeOutOfBounds {
                dim: 1,
                start: 3,
                end: 5,
                size: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("start <= end <= 4"), "{e}");
    assert!(matches!(
        ops::narrow(&x, 0, usize::MAX, 2).unwrap_err(),
        Error::RangeOutOfBounds {
            end: usize::MAX,
            ..
        }
    ));
    assert!(matches!(
        ops::narrow(&x, 0, 4, 0).unwrap_err(),
        Error::RangeOutOfBounds { start: 4, .. }
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 3..2;
    assert!(matches!(
        ops::slice(&x, &[backwards]).unwrap_err(),
        Error::RangeOutOfBounds { dim: 0, .. }
    ));
    let e = ops::slice(&x, &[0..1, 0..1, 0..1]).unwrap_err();
    assert!(
        matches!(e, Error::Shape { .. }) && e.to_string().contains("at most one range"),
        "{e}"
    );
    let e = ops::split(&x, &[1, 2], 1).unwrap_err();
    assert!(
        matches!(e, Error::Shape { .. }) && e.to_string().contains("sum to 4"),
        "{e}"
    );
    assert!(matches!(
        ops::split(&x, &[usize::MAX, 2], 1).unwrap_err(),
        Error::Shape { .. }
    ));
    assert!(matches!(
        ops::chunk(&x, 0, 0).unwrap_err(),
        Error::Argument { name: "n", .. }
    ));
    assert!(matches!(
        ops::chunk(&x, 2, 5).unwrap_err(),
        Error::Shape { .. }
    ));
    let s = Tensor::from_slice(device, &[1.0f32], &[]).unwrap();
    assert!(matches!(
        ops::narrow(&s, 0, 0, 1).unwrap_err(),
        Error::Shape { .. }
    ));
    assert_eq!(ops::slice(&s, &[]).unwrap().to_vec::<f32>().unwrap(), [1.0]);
}
backend_tests!(view_mistakes_are_typed_errors => view_mistakes_are_typed_errors_cpu, view_mistakes_are_typed_errors_gpu);

/// Blocks of a 1-D tensor at every start from 0 to 69: views at offsets the device can
/// bind, buffer copies at whole words it cannot, copy kernels mid-word (16-bit), each
/// read back and fed into an op.
fn every_small_offset(device: &Device) {
    for dtype in DType::ALL {
        let x = data(300, 31, dtype);
        let t = make(device, &x, &[300], dtype);
        for start in 0..70 {
            let v = ops::narrow(&t, 0, start, 37).unwrap();
            let want = &x[start..start + 37];
            let what = format!("{dtype} block at {start} on {device:?}");
            assert_exact(&what, &v, want);
            let plus: Vec<f64> = want
                .iter()
                .map(|w| f64::from(quantize(&[(w + 1.0) as f32], dtype)[0]))
                .collect();
            assert_close(
                &format!("add_scalar of {what}"),
                &ops::add_scalar(&v, 1.0).unwrap().to_f32_vec().unwrap(),
                &plus,
                0.0,
                0.0,
            );
        }
    }
}
backend_tests!(every_small_offset => every_small_offset_cpu, every_small_offset_gpu);

/// Views of a KV cache's keys taken between appends leave the cache's own attention
/// correct (the CPU cache copies its storage on write while a view holds it; a GPU
/// cache writes in place, and views never write).
fn kv_cache_with_views_of_its_keys(device: &Device) {
    use openkern::ops::attention::AttentionLayout;
    use openkern::ops::kv_cache::{CachePosition, KvCache};
    let (hk, d) = (2, 8);
    let run = |take_views: bool| {
        let mut cache = KvCache::new(device, 1, hk, 9, d, d, DType::F32).unwrap();
        let mut views = Vec::new();
        for (step, n) in [(0usize, 4usize), (4, 3), (7, 2)] {
            let k = make(
                device,
                &data(hk * n * d, step as u64 + 50, DType::F32),
                &[1, hk, n, d],
                DType::F32,
            );
            cache
                .append(
                    &k,
                    &k,
                    CachePosition::Host(step),
                    AttentionLayout::HeadsFirst,
                )
                .unwrap();
            if take_views {
                let keys = cache.keys().reshape(&[hk * 9, d]).unwrap();
                views.push(ops::narrow(&keys, 0, 0, 9).unwrap());
                views.push(ops::narrow(&keys, 0, 9, 9).unwrap());
            }
        }
        let q = make(
            device,
            &data(2 * 3 * d, 60, DType::F32),
            &[1, 2, 3, d],
            DType::F32,
        );
        let o = AttentionOptions {
            causal: true,
            ..Default::default()
        };
        (
            cache.attention(&q, &o).unwrap().to_f32_vec().unwrap(),
            views,
        )
    };
    let (plain, _) = run(false);
    let (with_views, views) = run(true);
    let want: Vec<f64> = plain.iter().map(|&v| f64::from(v)).collect();
    assert_close(
        &format!("cache attention with views alive on {device:?}"),
        &with_views,
        &want,
        0.0,
        0.0,
    );
    // the first views were taken after the first append: its rows are in them on every
    // backend (later rows depend on the backend: a GPU cache is written in place)
    let first = read(&views[0]);
    let k0 = data(hk * 4 * d, 50, DType::F32);
    assert_eq!(
        &first[..4 * d],
        &k0[..4 * d],
        "view of head 0 after the first append"
    );
}
backend_tests!(kv_cache_with_views_of_its_keys => kv_cache_with_views_of_its_keys_cpu, kv_cache_with_views_of_its_keys_gpu);

/// On a GPU (a device of its own, so no other test moves its counters): a view records
/// no pass, a fused QKV split records one copy pass per part, a gate-up chunk one per
/// half. The CPU counts nothing; there the proof of "no copy" is shared storage.
fn views_cost_no_pass_and_splits_one_per_part(device: &Device) {
    if device.is_cpu() {
        let x = tensor(device, &random(64 * 30, 1), &[30, 64], DType::F32);
        assert!(ops::narrow(&x, 0, 3, 9).unwrap().shares_storage_with(&x));
        return;
    }
    let own = Device::gpu().unwrap();
    for dtype in DType::ALL {
        let (tokens, hidden) = (16, 64);
        let x = tensor(
            &own,
            &random(tokens * 3 * hidden, 2),
            &[tokens, 3 * hidden],
            dtype,
        );
        own.sync().unwrap();
        let before = own.stats().passes;
        // rows 4..12: 4 rows of 192 elements, 1.5 or 3 KiB in: a multiple of 256 bytes
        let rows = ops::narrow(&x, 0, 4, 8).unwrap();
        assert!(rows.shares_storage_with(&x));
        assert_eq!(
            own.stats().passes,
            before,
            "{dtype}: a view recorded a pass"
        );
        let parts = ops::chunk(&x, 3, 1).unwrap();
        assert_eq!(own.stats().passes, before + 3, "{dtype}: QKV split passes");
        let halves = ops::chunk(&parts[0], 2, 1).unwrap();
        assert_eq!(
            own.stats().passes,
            before + 5,
            "{dtype}: gate-up split passes"
        );
        assert_eq!(halves[1].shape(), &[tokens, hidden / 2]);
    }
}
backend_tests!(views_cost_no_pass_and_splits_one_per_part => views_cost_no_pass_and_splits_one_per_part_cpu, views_cost_no_pass_and_splits_one_per_part_gpu);

/// u32 bit patterns a float path could change: all ones, quiet and signalling NaNs of
/// both signs with payloads, infinities, denormals, zero and minus zero.
const TRICKY_U32: [u32; 10] = [
    0xffff_ffff,
    0x7fc0_0001,
    0xff80_0001,
    0x7f80_0001,
    0xffc1_2345,
    0x7f80_0000,
    0x0000_0001,
    0x8000_0000,
    0,
    0x3f80_0000,
];

/// `n` u32 values: the tricky patterns interleaved with hashed words.
fn tricky_ids(n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                TRICKY_U32[(i / 2) % TRICKY_U32.len()]
            } else {
                ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
            }
        })
        .collect()
}

/// `x` (contiguous, `shape`) read through `perm`, in u32.
fn permuted_u32(x: &[u32], shape: &[usize], perm: &[usize]) -> Vec<u32> {
    let xs = contiguous_strides(shape);
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let os = contiguous_strides(&out);
    (0..x.len())
        .map(|i| {
            x[(0..out.len())
                .map(|k| (i / os[k]) % out[k] * xs[perm[k]])
                .sum::<usize>()]
        })
        .collect()
}

fn assert_bits(what: &str, got: &Tensor, want: &[u32]) {
    let got = got.to_vec::<u32>().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what}: element {i} is {g:#010x}, want {w:#010x}");
    }
}

/// u32 tensors (token ids) through a strided narrow along the last dimension, permutes
/// and concat: bit for bit (NaN patterns as f32 included), and on the GPU one pass each,
/// the layout kernel's u32 variant (not one buffer copy per element, not a float path).
fn u32_layout_copies_are_bit_exact_single_passes(device: &Device) {
    // the GPU side on its own device, so the pass counts see only these calls
    let own = if device.is_cpu() {
        device.clone()
    } else {
        Device::gpu().unwrap()
    };
    let passes = || own.stats().passes;
    let gpu = !own.is_cpu();
    let (rows, cols) = (7, 13);
    let ids = tricky_ids(rows * cols);
    let x = Tensor::from_slice(&own, &ids, &[rows, cols]).unwrap();
    for (start, len) in [(3, 1), (2, 5), (0, cols - 1), (cols - 1, 1)] {
        let what = format!("narrow [{rows}, {cols}] dim 1 {start}+{len} on {own:?}");
        let before = passes();
        let got = ops::narrow(&x, 1, start, len).unwrap();
        if gpu {
            assert_eq!(passes(), before + 1, "{what}: one copy pass");
        }
        assert_eq!(got.shape(), &[rows, len]);
        let want: Vec<u32> = (0..rows)
            .flat_map(|r| ids[r * cols + start..r * cols + start + len].to_vec())
            .collect();
        assert_bits(&what, &got, &want);
    }
    let cases: &[(&[usize], &[usize])] = &[
        (&[rows, cols], &[1, 0]),
        (&[3, 5, 6], &[2, 0, 1]),
        (&[2, 3, 4, 5], &[0, 2, 1, 3]),
    ];
    for &(shape, perm) in cases {
        let n: usize = shape.iter().product();
        let v = tricky_ids(n);
        let t = Tensor::from_slice(&own, &v, shape).unwrap();
        let what = format!("permute {shape:?} {perm:?} u32 on {own:?}");
        let before = passes();
        let got = ops::permute(&t, perm).unwrap();
        if gpu {
            assert_eq!(passes(), before + 1, "{what}: one copy pass");
        }
        let want_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        assert_eq!(got.shape(), &want_shape[..], "{what}");
        assert_bits(&what, &got, &permuted_u32(&v, shape, perm));
    }
    // concat along the last dimension: one pass per part
    let (a, b) = (tricky_ids(rows * 3), tricky_ids(rows * 4));
    let ta = Tensor::from_slice(&own, &a, &[rows, 3]).unwrap();
    let tb = Tensor::from_slice(&own, &b, &[rows, 4]).unwrap();
    let before = passes();
    let got = ops::concat(&[&tb, &ta], 1).unwrap();
    if gpu {
        assert_eq!(passes(), before + 2, "concat u32: one pass per part");
    }
    let want: Vec<u32> = (0..rows)
        .flat_map(|r| [&b[r * 4..r * 4 + 4], &a[r * 3..r * 3 + 3]].concat())
        .collect();
    assert_bits(&format!("concat u32 on {own:?}"), &got, &want);
}
backend_tests!(u32_layout_copies_are_bit_exact_single_passes => u32_layout_copies_are_bit_exact_single_passes_cpu, u32_layout_copies_are_bit_exact_single_passes_gpu);
