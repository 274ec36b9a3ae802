//! RoPE against an f64 reference (the exact angle p · inv_freq, inv_freq rounded to f32 as
//! the op documents) in both layouts, both axis orders, partial rotary, a decode offset
//! and far positions up to the 2^24 bound; every backend and dtype.

mod common;
use common::*;
use openkern::ops::{RopeAxes, RopeLayout, RopeOptions};
use openkern::Device;
use openkern::{ops, DType, Error};

fn reference(x: &[f32], shape: &[usize], o: &RopeOptions) -> Vec<f64> {
    let r = shape.len();
    let d = shape[r - 1];
    let rot = o.rotary_dim.unwrap_or(d);
    let (seq, div) = match o.axes {
        RopeAxes::SeqHeadsDim => (shape[r - 3], shape[r - 2]),
        RopeAxes::HeadsSeqDim => (shape[r - 2], 1),
    };
    let h = rot / 2;
    let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for (row, chunk) in x.chunks(d).enumerate() {
        let pos = (row / div) % seq + o.offset;
        for i in 0..h {
            let inv = (o.theta as f64).powf(-2.0 * i as f64 / rot as f64) as f32;
            let angle = pos as f64 * inv as f64;
            let (s, c) = angle.sin_cos();
            let (a, b) = match o.layout {
                RopeLayout::Halves => (i, i + h),
                RopeLayout::Interleaved => (2 * i, 2 * i + 1),
            };
            let (u, v) = (chunk[a] as f64, chunk[b] as f64);
            out[row * d + a] = u * c - v * s;
            out[row * d + b] = v * c + u * s;
        }
    }
    out
}

fn rope_against_f64(device: &Device) {
    let cases: &[(&[usize], RopeAxes, Option<usize>, usize)] = &[
        (&[5, 3, 8], RopeAxes::SeqHeadsDim, None, 0),
        (&[2, 7, 4, 64], RopeAxes::SeqHeadsDim, None, 3),
        (&[2, 3, 9, 128], RopeAxes::HeadsSeqDim, None, 0),
        (&[1, 1, 2, 80], RopeAxes::SeqHeadsDim, Some(32), 0),
        (&[6, 10], RopeAxes::HeadsSeqDim, Some(6), 0),
        // decode: one new token at position 1000 of the cache
        (&[1, 32, 128], RopeAxes::SeqHeadsDim, None, 1000),
    ];
    for dtype in DType::ALL {
        for &(shape, axes, rotary_dim, offset) in cases {
            for layout in [RopeLayout::Halves, RopeLayout::Interleaved] {
                let n: usize = shape.iter().product();
                let x = quantize(
                    &random(n, n as u64)
                        .iter()
                        .map(|v| v * 4.0)
                        .collect::<Vec<_>>(),
                    dtype,
                );
                let o = RopeOptions {
                    theta: 10_000.0,
                    layout,
                    axes,
                    offset,
                    rotary_dim,
                };
                let got = ops::rope(&tensor(device, &x, shape, dtype), &o).unwrap();
                // GPU sin/cos after the range reduction: ~1e-6 absolute on |x| ≤ 4
                let atol = 4.0 * (dtype.epsilon() + 2e-6);
                assert_close(
                    &format!("rope {shape:?} {layout:?} {axes:?} rot {rotary_dim:?} +{offset} {dtype} on {device:?}"),
                    &got.to_f32_vec().unwrap(),
                    &reference(&x, shape, &o),
                    atol,
                    dtype.epsilon() * 1.01,
                );
            }
        }
    }
}
backend_tests!(rope_against_f64 => rope_against_f64_cpu, rope_against_f64_gpu);

fn decode_offset_matches_the_prefill_row(device: &Device) {
    // rotating token t alone at offset t must equal row t of rotating the whole sequence
    let (seq, heads, d) = (9, 2, 16);
    let x = random(seq * heads * d, 5);
    let full = ops::rope(
        &tensor(device, &x, &[seq, heads, d], DType::F32),
        &RopeOptions::default(),
    )
    .unwrap()
    .to_f32_vec()
    .unwrap();
    let t = 7;
    let one = &x[t * heads * d..(t + 1) * heads * d];
    let o = RopeOptions {
        offset: t,
        ..Default::default()
    };
    let got = ops::rope(&tensor(device, one, &[1, heads, d], DType::F32), &o)
        .unwrap()
        .to_f32_vec()
        .unwrap();
    assert_eq!(got, full[t * heads * d..(t + 1) * heads * d].to_vec());
}
backend_tests!(decode_offset_matches_the_prefill_row => decode_offset_matches_the_prefill_row_cpu, decode_offset_matches_the_prefill_row_gpu);

fn far_positions_are_exact(device: &Device) {
    // [1, 0] and [0, 1] in every pair: the output is cos and sin of the angle itself.
    // With an f32 angle the error passed 1e-4 at p ~ 547,000 and 0.25 at 8,000,000.
    let d = 16;
    let positions = [
        0usize,
        1,
        4095,
        65_537,
        547_000,
        1 << 20,
        3_000_001,
        8_000_000,
        (1 << 24) - 2,
    ];
    for theta in [10_000.0f32, 500_000.0] {
        for layout in [RopeLayout::Halves, RopeLayout::Interleaved] {
            for &p in &positions {
                let mut x = vec![0f32; 2 * d];
                for i in 0..d / 2 {
                    let (a, b) = match layout {
                        RopeLayout::Halves => (i, i + d / 2),
                        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                    };
                    x[a] = 1.0; // head 0: [1, 0] per pair
                    x[d + b] = 1.0; // head 1: [0, 1] per pair
                }
                // two positions, so the far end of the pair p, p + 1 is checked too
                let x = [x.clone(), x].concat();
                let o = RopeOptions {
                    theta,
                    layout,
                    offset: p,
                    ..Default::default()
                };
                let t = tensor(device, &x, &[2, 2, d], DType::F32);
                let got = ops::rope(&t, &o).unwrap().to_f32_vec().unwrap();
                let want = reference(&x, &[2, 2, d], &o);
                // f32 rounding of values of magnitude <= 1: half an ulp of 1 is 6e-8
                assert_close(
                    &format!("rope theta {theta} {layout:?} at position {p} on {device:?}"),
                    &got,
                    &want,
                    1.2e-7,
                    0.0,
                );
            }
        }
    }
}
backend_tests!(far_positions_are_exact => far_positions_are_exact_cpu, far_positions_are_exact_gpu);

fn positions_past_the_bound_are_errors(device: &Device) {
    let x = tensor(device, &random(2 * 3 * 6, 1), &[2, 3, 6], DType::F32);
    // the last position 2^24 - 1 is allowed; one more, or an offset that overflows, is not
    let at = |offset: usize| {
        ops::rope(
            &x,
            &RopeOptions {
                offset,
                ..Default::default()
            },
        )
    };
    assert!(at(ops::rope::MAX_POSITION - 2).is_ok());
    for offset in [ops::rope::MAX_POSITION - 1, usize::MAX - 1, usize::MAX] {
        let e = at(offset).unwrap_err();
        assert!(matches!(e, Error::Argument { name: "offset", .. }), "{e}");
        assert!(e.to_string().contains("2^24"), "{e}");
    }
}
backend_tests!(positions_past_the_bound_are_errors => positions_past_the_bound_are_errors_cpu, positions_past_the_bound_are_errors_gpu);

fn mistakes_are_typed_errors(device: &Device) {
    let x = tensor(device, &random(2 * 3 * 6, 1), &[2, 3, 6], DType::F32);
    let bad = |o: RopeOptions| ops::rope(&x, &o).unwrap_err();
    assert!(matches!(
        bad(RopeOptions {
            rotary_dim: Some(3),
            ..Default::default()
        }),
        Error::Shape { .. }
    ));
    assert!(matches!(
        bad(RopeOptions {
            rotary_dim: Some(8),
            ..Default::default()
        }),
        Error::Shape { .. }
    ));
    assert!(matches!(
        bad(RopeOptions {
            theta: f32::NAN,
            ..Default::default()
        }),
        Error::Argument { name: "theta", .. }
    ));
    assert!(matches!(
        bad(RopeOptions {
            offset: 1 << 24,
            ..Default::default()
        }),
        Error::Argument { name: "offset", .. }
    ));
    let odd = tensor(device, &random(5, 1), &[1, 1, 5], DType::F32);
    assert!(matches!(
        ops::rope(&odd, &RopeOptions::default()).unwrap_err(),
        Error::Shape { .. }
    ));
    let flat = tensor(device, &random(4, 1), &[1, 4], DType::F32);
    assert!(matches!(
        ops::rope(&flat, &RopeOptions::default()).unwrap_err(),
        Error::Shape { .. }
    ));
}
backend_tests!(mistakes_are_typed_errors => mistakes_are_typed_errors_cpu, mistakes_are_typed_errors_gpu);

/// The layers of a forward rotate the same positions: the angle table goes to the device
/// once, and each later call records only its own pass (no upload, no new buffer).
#[test]
fn repeated_positions_upload_the_table_once() {
    if gpu().is_none() {
        return;
    }
    // a device of its own: the other tests of this binary allocate on the shared one
    let device = openkern::Device::gpu().unwrap();
    let x = tensor(&device, &random(4 * 3 * 64, 7), &[4, 3, 64], DType::F32);
    let o = RopeOptions {
        offset: 4321,
        ..Default::default()
    };
    ops::rope(&x, &o).unwrap();
    let before = device.stats();
    for _ in 0..5 {
        ops::rope(&x, &o).unwrap();
    }
    let after = device.stats();
    let allocations = |s: &openkern::DeviceStats| s.pool_hits + s.pool_misses;
    assert_eq!(after.passes - before.passes, 5, "{before:?} -> {after:?}");
    // one buffer per call: its output
    assert_eq!(
        allocations(&after) - allocations(&before),
        5,
        "{before:?} -> {after:?}"
    );
}
