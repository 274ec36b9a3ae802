//! RoPE against an f64 reference (f32 angle, as the op documents) in both layouts, both
//! axis orders, partial rotary, and a decode offset; every backend and dtype.

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
            let angle = (pos as f32 * inv) as f64;
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
