//! Fused attention against the naive f64 `softmax(q·kᵀ·scale + mask)·v` on every backend:
//! lengths that are not tile multiples, head dims 32..256, GQA ratios 1/4/8, every mask
//! kind, soft-capping, both layouts, every dtype, fully masked rows, decode through the KV
//! cache, and typed errors for bad input.

mod common;
use common::*;
use openkern::ops::attention::{describe, AttentionLayout, AttentionOptions};
use openkern::ops::kv_cache::{CachePosition, KvCache};
use openkern::{ops, DType, Device, Error, Tensor};

#[derive(Clone)]
struct Case {
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    q_len: usize,
    kv_len: usize,
    d: usize,
    dv: usize,
    causal: bool,
    window: usize,
    softcap: Option<f32>,
    scale: Option<f32>,
    /// additive mask shape (broadcast to [batch, q_heads, q_len, kv_len])
    mask: Option<Vec<usize>>,
    /// mask dtype f32 instead of the activations' dtype
    mask_f32: bool,
    lengths: Option<Vec<u32>>,
    layout: AttentionLayout,
}

impl Case {
    fn new(q_heads: usize, kv_heads: usize, q_len: usize, kv_len: usize, d: usize) -> Case {
        Case {
            batch: 1,
            q_heads,
            kv_heads,
            q_len,
            kv_len,
            d,
            dv: d,
            causal: false,
            window: 0,
            softcap: None,
            scale: None,
            mask: None,
            mask_f32: true,
            lengths: None,
            layout: AttentionLayout::HeadsFirst,
        }
    }
}

/// [b, h, l, d] (heads-first, contiguous) to [b, l, h, d].
fn to_seq_first(x: &[f32], b: usize, h: usize, l: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for bi in 0..b {
        for hi in 0..h {
            for li in 0..l {
                let src = ((bi * h + hi) * l + li) * d;
                let dst = ((bi * l + li) * h + hi) * d;
                out[dst..dst + d].copy_from_slice(&x[src..src + d]);
            }
        }
    }
    out
}

/// Mask values in [-2, 0) with some −∞ entries.
fn mask_values(n: usize, seed: u64) -> Vec<f32> {
    random(n, seed)
        .into_iter()
        .enumerate()
        .map(|(i, x)| {
            if i % 7 == 3 {
                f32::NEG_INFINITY
            } else {
                x - 1.0
            }
        })
        .collect()
}

/// The documented semantics in f64 (heads-first inputs, already rounded to the dtype).
fn reference(c: &Case, q: &[f32], k: &[f32], v: &[f32], mask: Option<&[f32]>) -> Vec<f64> {
    let (b_, hq, hk, ql, kl, d, dv) =
        (c.batch, c.q_heads, c.kv_heads, c.q_len, c.kv_len, c.d, c.dv);
    let group = hq / hk;
    let scale = c.scale.unwrap_or(1.0 / (d as f32).sqrt()) as f64;
    let full = [b_, hq, ql, kl];
    let ms = c
        .mask
        .as_ref()
        .map(|s| openkern::shape::broadcast_strides(s, &full));
    let mut out = vec![0f64; b_ * hq * ql * dv];
    for b in 0..b_ {
        let len = c.lengths.as_ref().map_or(kl, |l| l[b] as usize);
        for h in 0..hq {
            let kh = h / group;
            for i in 0..ql {
                let p = i as i64 + len as i64 - ql as i64;
                let mut logits = vec![f64::NEG_INFINITY; kl];
                for (j, lj) in logits.iter_mut().enumerate() {
                    let ji = j as i64;
                    let w = c.window as i64;
                    let hidden = j >= len
                        || (c.causal && ji > p)
                        || (c.window > 0 && (ji <= p - w || (!c.causal && ji >= p + w)));
                    if hidden {
                        continue;
                    }
                    let qo = ((b * hq + h) * ql + i) * d;
                    let ko = ((b * hk + kh) * kl + j) * d;
                    let mut s: f64 = (0..d).map(|t| q[qo + t] as f64 * k[ko + t] as f64).sum();
                    s *= scale;
                    if let Some(cap) = c.softcap {
                        s = cap as f64 * (s / cap as f64).tanh();
                    }
                    if let (Some(m), Some(ms)) = (mask, &ms) {
                        s += m[b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3]] as f64;
                    }
                    *lj = s;
                }
                let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let o = &mut out[((b * hq + h) * ql + i) * dv..][..dv];
                if mx == f64::NEG_INFINITY {
                    continue;
                }
                let mut sum = 0.0;
                for (j, &l) in logits.iter().enumerate() {
                    let p = (l - mx).exp();
                    sum += p;
                    let vo = ((b * hk + kh) * kl + j) * dv;
                    for t in 0..dv {
                        o[t] += p * v[vo + t] as f64;
                    }
                }
                for x in o.iter_mut() {
                    *x /= sum;
                }
            }
        }
    }
    out
}

fn tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F32 => (2e-5, 2e-4),
        DType::F16 => (2e-3, 4e-3),
        _ => (1.6e-2, 1.6e-2),
    }
}

/// Runs `c` on `device` in `dtype` and compares with the reference.
fn check(device: &Device, dtype: DType, c: &Case, seed: u64) {
    let what = format!(
        "{} {dtype} b{} hq{} hkv{} q{} kv{} d{}/{} causal {} window {} cap {:?} mask {:?} lens {:?} {:?}",
        device.info().name,
        c.batch,
        c.q_heads,
        c.kv_heads,
        c.q_len,
        c.kv_len,
        c.d,
        c.dv,
        c.causal,
        c.window,
        c.softcap,
        c.mask,
        c.lengths,
        c.layout
    );
    let q = quantize(&random(c.batch * c.q_heads * c.q_len * c.d, seed), dtype);
    let k = quantize(
        &random(c.batch * c.kv_heads * c.kv_len * c.d, seed + 1),
        dtype,
    );
    let v = quantize(
        &random(c.batch * c.kv_heads * c.kv_len * c.dv, seed + 2),
        dtype,
    );
    let mdt = if c.mask_f32 { DType::F32 } else { dtype };
    let mask = c
        .mask
        .as_ref()
        .map(|s| quantize(&mask_values(s.iter().product(), seed + 3), mdt));
    let want = reference(c, &q, &k, &v, mask.as_deref());
    let (qs, ks, vs) = match c.layout {
        AttentionLayout::HeadsFirst => (q, k, v),
        AttentionLayout::SeqFirst => (
            to_seq_first(&q, c.batch, c.q_heads, c.q_len, c.d),
            to_seq_first(&k, c.batch, c.kv_heads, c.kv_len, c.d),
            to_seq_first(&v, c.batch, c.kv_heads, c.kv_len, c.dv),
        ),
    };
    let shape = |h: usize, l: usize, d: usize| match c.layout {
        AttentionLayout::HeadsFirst => [c.batch, h, l, d],
        AttentionLayout::SeqFirst => [c.batch, l, h, d],
    };
    let qt = tensor(device, &qs, &shape(c.q_heads, c.q_len, c.d), dtype);
    let kt = tensor(device, &ks, &shape(c.kv_heads, c.kv_len, c.d), dtype);
    let vt = tensor(device, &vs, &shape(c.kv_heads, c.kv_len, c.dv), dtype);
    let mt = mask
        .as_ref()
        .map(|m| tensor(device, m, c.mask.as_ref().unwrap(), mdt));
    let lt = c
        .lengths
        .as_ref()
        .map(|l| Tensor::from_slice(device, l, &[c.batch]).unwrap());
    let opts = AttentionOptions {
        scale: c.scale,
        causal: c.causal,
        window: (c.window > 0).then_some(c.window),
        mask: mt.as_ref(),
        kv_lengths: lt.as_ref(),
        softcap: c.softcap,
        layout: c.layout,
    };
    let kernel = describe(&qt, &kt, &vt, &opts).expect("describe");
    let out = ops::attention(&qt, &kt, &vt, &opts).expect("attention");
    assert_eq!(out.shape(), &shape(c.q_heads, c.q_len, c.dv));
    let mut got = out.to_f32_vec().unwrap();
    if c.layout == AttentionLayout::SeqFirst {
        // back to heads-first to compare
        let mut hf = vec![0.0; got.len()];
        for b in 0..c.batch {
            for h in 0..c.q_heads {
                for i in 0..c.q_len {
                    let src = ((b * c.q_len + i) * c.q_heads + h) * c.dv;
                    let dst = ((b * c.q_heads + h) * c.q_len + i) * c.dv;
                    hf[dst..dst + c.dv].copy_from_slice(&got[src..src + c.dv]);
                }
            }
        }
        got = hf;
    }
    let (atol, rtol) = tolerance(dtype);
    assert_close(&format!("{what} [{kernel}]"), &got, &want, atol, rtol);
}

/// Each length in 1, 7, 63, 65, 257 with a head dim from 32..256 and a GQA ratio of 1, 4
/// or 8, with and without the causal mask.
fn lengths_and_head_dims(device: &Device) {
    let cases = [
        (1, 1, 32, 1),
        (7, 7, 64, 4),
        (63, 63, 80, 8),
        (65, 65, 96, 1),
        (257, 257, 128, 4),
        (33, 40, 256, 8),
        (17, 17, 8, 1),
    ];
    for (n, &(ql, kl, d, ratio)) in cases.iter().enumerate() {
        for causal in [false, true] {
            let mut c = Case::new(ratio, 1, ql, kl, d);
            c.causal = causal;
            if n % 2 == 1 {
                c.batch = 2;
                c.kv_heads = 2;
                c.q_heads = 2 * ratio;
            }
            check(device, DType::F32, &c, 10 + n as u64);
        }
    }
    if large() {
        let mut c = Case::new(4, 1, 1000, 1000, 64);
        c.causal = true;
        check(device, DType::F32, &c, 99);
    }
}
backend_tests!(lengths_and_head_dims => lengths_and_head_dims_cpu, lengths_and_head_dims_gpu, lengths_and_head_dims_gpu_nosubgroups);

/// Head dims narrower than a subgroup (the subgroup kernel's lanes past head_dim or
/// v_dim read clamped columns and store nothing; 64- and 128-wide subgroups meet this at
/// head_dim 64), with every mask kind, through prefill and split-KV decode.
fn heads_narrower_than_a_subgroup(device: &Device) {
    let mut cases = Vec::new();
    let mut c = Case::new(4, 1, 9, 70, 3);
    c.dv = 5;
    c.causal = true;
    cases.push(c.clone());
    c.window = 6;
    c.softcap = Some(2.0);
    cases.push(c.clone());
    let mut c = Case::new(2, 2, 17, 33, 5);
    c.dv = 1;
    c.batch = 2;
    c.mask = Some(vec![2, 1, 17, 33]);
    c.lengths = Some(vec![33, 4]);
    cases.push(c);
    let mut c = Case::new(8, 2, 1, 700, 7);
    c.dv = 2;
    c.causal = true;
    cases.push(c);
    for (n, c) in cases.iter().enumerate() {
        check(device, DType::F32, c, 80 + n as u64);
    }
    // the subgroup kernel runs exactly where the adapter has one fixed subgroup size
    let f = &device.info().features;
    let fixed = f.subgroup && f.subgroup_min_size == f.subgroup_max_size;
    let x = tensor(device, &random(4 * 8, 1), &[1, 1, 4, 8], DType::F32);
    let kernel = describe(&x, &x, &x, &AttentionOptions::default()).unwrap();
    let gpu = device.info().device_type != openkern::DeviceType::Cpu;
    assert_eq!(kernel.contains("subgroup"), gpu && fixed, "{kernel}");
}
backend_tests!(heads_narrower_than_a_subgroup => heads_narrower_than_a_subgroup_cpu, heads_narrower_than_a_subgroup_gpu, heads_narrower_than_a_subgroup_gpu_nosubgroups);

/// f16 and bf16 storage (f32 arithmetic), masks in the activations' dtype and in f32.
fn dtypes(device: &Device) {
    for dtype in [DType::F16, DType::BF16] {
        for (n, mask_f32) in [false, true].into_iter().enumerate() {
            let mut c = Case::new(4, 1, 65, 65, 64);
            c.causal = true;
            c.mask = Some(vec![65, 65]);
            c.mask_f32 = mask_f32;
            check(device, dtype, &c, 20 + n as u64);
            let mut c = Case::new(8, 1, 1, 300, 80);
            c.dv = 48;
            check(device, dtype, &c, 22 + n as u64);
        }
    }
}
backend_tests!(dtypes => dtypes_cpu, dtypes_gpu, dtypes_gpu_nosubgroups);

/// Causal with q_len < kv_len (chunked prefill), sliding windows, padding lengths,
/// additive masks of every broadcast rank, soft-capping, an explicit scale, v_dim ≠ d.
fn mask_kinds(device: &Device) {
    let mut cases = Vec::new();
    let mut c = Case::new(4, 2, 7, 65, 32);
    c.causal = true;
    cases.push(c.clone());
    c.window = 5;
    cases.push(c.clone());
    let mut c = Case::new(2, 2, 63, 63, 64);
    c.window = 9;
    cases.push(c.clone());
    c.causal = true;
    c.window = 16;
    cases.push(c.clone());
    let mut c = Case::new(4, 1, 63, 65, 32);
    c.batch = 3;
    c.lengths = Some(vec![65, 20, 1]);
    cases.push(c.clone());
    c.causal = true;
    cases.push(c.clone());
    for shape in [
        vec![63, 65],
        vec![3, 1, 63, 65],
        vec![3, 4, 63, 65],
        vec![4, 1, 65],
    ] {
        let mut m = c.clone();
        m.causal = false;
        m.lengths = None;
        m.mask = Some(shape);
        cases.push(m);
    }
    let mut c = Case::new(2, 1, 65, 65, 64);
    c.softcap = Some(0.5);
    c.scale = Some(3.0);
    c.causal = true;
    cases.push(c.clone());
    c.dv = 24;
    c.softcap = None;
    cases.push(c);
    for (n, c) in cases.iter().enumerate() {
        check(device, DType::F32, c, 30 + n as u64);
    }
}
backend_tests!(mask_kinds => mask_kinds_cpu, mask_kinds_gpu, mask_kinds_gpu_nosubgroups);

/// The `[batch, len, heads, dim]` layout gives the same numbers without a permute.
fn seq_first_layout(device: &Device) {
    let mut c = Case::new(8, 2, 33, 70, 64);
    c.batch = 2;
    c.causal = true;
    c.layout = AttentionLayout::SeqFirst;
    check(device, DType::F32, &c, 50);
    c.q_len = 1;
    c.kv_len = 700;
    check(device, DType::BF16, &c, 51);
}
backend_tests!(seq_first_layout => seq_first_layout_cpu, seq_first_layout_gpu, seq_first_layout_gpu_nosubgroups);

/// One or a few queries against a long cache (the GPU's split-KV decode path).
fn decode_shapes(device: &Device) {
    for (n, &(hq, hk, ql, kl, d)) in [
        (8, 8, 1, 1000, 64),
        (8, 1, 1, 777, 128),
        (4, 1, 4, 2049, 256),
        (32, 8, 1, 513, 96),
    ]
    .iter()
    .enumerate()
    {
        let mut c = Case::new(hq, hk, ql, kl, d);
        c.causal = true;
        check(device, DType::F32, &c, 60 + n as u64);
    }
    let mut c = Case::new(4, 1, 1, 900, 64);
    c.batch = 2;
    c.lengths = Some(vec![900, 3]);
    c.window = 100;
    c.causal = true;
    check(device, DType::F16, &c, 70);
}
backend_tests!(decode_shapes => decode_shapes_cpu, decode_shapes_gpu, decode_shapes_gpu_nosubgroups);

/// Rows with no visible key are zeros, never NaN.
fn fully_masked_rows(device: &Device) {
    let d = 32;
    let q = tensor(device, &random(2 * 5 * d, 1), &[2, 1, 5, d], DType::F32);
    let k = tensor(device, &random(2 * 3 * d, 2), &[2, 1, 3, d], DType::F32);
    let v = tensor(device, &random(2 * 3 * d, 3), &[2, 1, 3, d], DType::F32);
    // causal with q_len > kv_len: the first two tokens of each row see nothing; batch 1
    // has no valid key at all
    let lens = Tensor::from_slice(device, &[3u32, 0], &[2]).unwrap();
    let o = AttentionOptions {
        causal: true,
        kv_lengths: Some(&lens),
        ..Default::default()
    };
    let out = ops::attention(&q, &k, &v, &o)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(out.iter().all(|x| x.is_finite()));
    assert!(
        out[..2 * d].iter().all(|&x| x == 0.0),
        "{:?}",
        &out[..2 * d]
    );
    assert!(out[2 * d..5 * d].iter().any(|&x| x != 0.0));
    assert!(out[5 * d..].iter().all(|&x| x == 0.0));
    // an all −∞ additive mask
    let m = tensor(device, &[f32::NEG_INFINITY; 15], &[5, 3], DType::F32);
    let o = AttentionOptions {
        mask: Some(&m),
        ..Default::default()
    };
    let out = ops::attention(&q, &k, &v, &o)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(out.iter().all(|&x| x == 0.0));
}
backend_tests!(fully_masked_rows => fully_masked_rows_cpu, fully_masked_rows_gpu, fully_masked_rows_gpu_nosubgroups);

fn is_err<T: std::fmt::Debug>(r: openkern::Result<T>, check: impl Fn(&Error) -> bool) {
    match r {
        Err(e) if check(&e) => {}
        other => panic!("unexpected result {other:?}"),
    }
}

/// Every bad input is a typed error.
fn bad_inputs(device: &Device) {
    let t = |shape: &[usize], dtype: DType| {
        tensor(device, &vec![0.5; shape.iter().product()], shape, dtype)
    };
    let q = t(&[1, 6, 4, 32], DType::F32);
    let k = t(&[1, 4, 4, 32], DType::F32);
    let v = t(&[1, 4, 4, 32], DType::F32);
    let d = AttentionOptions::default();
    is_err(ops::attention(&q, &k, &v, &d), |e| {
        matches!(
            e,
            Error::AttentionHeads {
                q_heads: 6,
                kv_heads: 4
            }
        )
    });
    let q = t(&[1, 4, 4, 32], DType::F32);
    let k16 = t(&[1, 4, 4, 16], DType::F32);
    is_err(ops::attention(&q, &k16, &v, &d), |e| {
        matches!(e, Error::HeadDim { q: 32, k: 16 })
    });
    let kh = t(&[1, 4, 4, 32], DType::F16);
    is_err(ops::attention(&q, &kh, &v, &d), |e| {
        matches!(e, Error::DTypeMismatch { .. })
    });
    let v5 = t(&[1, 4, 5, 32], DType::F32);
    is_err(ops::attention(&q, &k, &v5, &d), |e| {
        matches!(e, Error::Shape { .. })
    });
    let q3 = t(&[4, 4, 32], DType::F32);
    is_err(ops::attention(&q3, &k, &v, &d), |e| {
        matches!(e, Error::Shape { .. })
    });
    let kb = t(&[2, 4, 4, 32], DType::F32);
    is_err(ops::attention(&q, &kb, &kb, &d), |e| {
        matches!(e, Error::Shape { .. })
    });
    let bad_mask = t(&[4, 5], DType::F32);
    let o = AttentionOptions {
        mask: Some(&bad_mask),
        ..Default::default()
    };
    is_err(ops::attention(&q, &k, &v, &o), |e| {
        matches!(e, Error::Shape { .. })
    });
    let u = Tensor::from_slice(device, &[0u32; 16], &[4, 4]).unwrap();
    let o = AttentionOptions {
        mask: Some(&u),
        ..Default::default()
    };
    is_err(ops::attention(&q, &k, &v, &o), |e| {
        matches!(e, Error::UnsupportedDType { .. })
    });
    let flen = t(&[1], DType::F32);
    let o = AttentionOptions {
        kv_lengths: Some(&flen),
        ..Default::default()
    };
    is_err(ops::attention(&q, &k, &v, &o), |e| {
        matches!(e, Error::UnsupportedDType { .. })
    });
    let o = AttentionOptions {
        scale: Some(f32::NAN),
        ..Default::default()
    };
    is_err(ops::attention(&q, &k, &v, &o), |e| {
        matches!(e, Error::Argument { .. })
    });
    let o = AttentionOptions {
        softcap: Some(-1.0),
        ..Default::default()
    };
    is_err(ops::attention(&q, &k, &v, &o), |e| {
        matches!(e, Error::Argument { .. })
    });
    let ui = Tensor::from_slice(device, &[0u32; 4 * 4 * 32], &[1, 4, 4, 32]).unwrap();
    is_err(ops::attention(&ui, &ui, &ui, &d), |e| {
        matches!(e, Error::UnsupportedDType { .. })
    });
    // a valid length past the keys: an error from the call (CPU) or from the next read
    // (GPU, where the lengths may have been computed on the device)
    let long = Tensor::from_slice(device, &[9u32], &[1]).unwrap();
    let o = AttentionOptions {
        kv_lengths: Some(&long),
        ..Default::default()
    };
    let r = ops::attention(&q, &k, &v, &o).and_then(|out| out.to_vec::<f32>());
    is_err(r, |e| {
        matches!(
            e,
            Error::KvLength {
                batch: 0,
                length: 9,
                kv_len: 4
            }
        )
    });
    if !device.is_cpu() {
        let big = t(&[1, 1, 4, 264], DType::F32);
        is_err(ops::attention(&big, &big, &big, &d), |e| {
            matches!(e, Error::Shape { .. })
        });
    }
    // the device is healthy afterwards
    ops::attention(&q, &k, &v, &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
}
backend_tests!(bad_inputs => bad_inputs_cpu, bad_inputs_gpu, bad_inputs_gpu_nosubgroups);

/// Decoding token by token through the cache (host and device positions) gives the
/// prefill's outputs, and appends past the cache are typed errors.
fn cache_decode_matches_prefill(device: &Device) {
    for dtype in [DType::F32, DType::F16] {
        let (b, hq, hk, n, d) = (2, 4, 2, 37, 64);
        let q = quantize(&random(b * hq * n * d, 80), dtype);
        let k = quantize(&random(b * hk * n * d, 81), dtype);
        let v = quantize(&random(b * hk * n * d, 82), dtype);
        let qt = tensor(device, &q, &[b, hq, n, d], dtype);
        let kt = tensor(device, &k, &[b, hk, n, d], dtype);
        let vt = tensor(device, &v, &[b, hk, n, d], dtype);
        let causal = AttentionOptions {
            causal: true,
            ..Default::default()
        };
        let full = ops::attention(&qt, &kt, &vt, &causal)
            .unwrap()
            .to_f32_vec()
            .unwrap();
        // rows [t0, t1) of a [b, h, n, d] tensor
        let slice = |x: &[f32], h: usize, t0: usize, t1: usize| {
            let mut out = Vec::new();
            for bi in 0..b {
                for hi in 0..h {
                    let s = ((bi * h + hi) * n + t0) * d;
                    out.extend_from_slice(&x[s..s + (t1 - t0) * d]);
                }
            }
            out
        };
        for device_positions in [false, true] {
            let mut cache = KvCache::new(device, b, hk, 48, d, d, dtype).unwrap();
            let mut t = 0;
            // a prefill chunk of 5 tokens, then single tokens
            while t < n {
                let step = if t == 0 { 5 } else { 1 };
                let kn = tensor(
                    device,
                    &slice(&k, hk, t, t + step),
                    &[b, hk, step, d],
                    dtype,
                );
                let vn = tensor(
                    device,
                    &slice(&v, hk, t, t + step),
                    &[b, hk, step, d],
                    dtype,
                );
                let qn = tensor(
                    device,
                    &slice(&q, hq, t, t + step),
                    &[b, hq, step, d],
                    dtype,
                );
                let pos_t;
                let pos = if device_positions {
                    pos_t = Tensor::from_slice(device, &vec![t as u32; b], &[b]).unwrap();
                    CachePosition::Device(&pos_t)
                } else {
                    CachePosition::Host(t)
                };
                cache
                    .append(&kn, &vn, pos, AttentionLayout::HeadsFirst)
                    .unwrap();
                let out = cache.attention(&qn, &causal).unwrap().to_f32_vec().unwrap();
                let want: Vec<f64> = slice(&full, hq, t, t + step)
                    .into_iter()
                    .map(f64::from)
                    .collect();
                let (atol, rtol) = tolerance(dtype);
                assert_close(
                    &format!("{dtype} decode step {t} (device positions {device_positions})"),
                    &out,
                    &want,
                    atol,
                    rtol,
                );
                t += step;
            }
            let one = tensor(device, &vec![0.0; b * hk * 12 * d], &[b, hk, 12, d], dtype);
            if device_positions {
                // found on the device: reported by every read of the cache and of what
                // is computed from it, never by reads of unrelated tensors
                let pos = Tensor::from_slice(device, &[40u32, 0], &[b]).unwrap();
                let r = cache
                    .append(
                        &one,
                        &one,
                        CachePosition::Device(&pos),
                        AttentionLayout::HeadsFirst,
                    )
                    .and_then(|_| device.sync())
                    .and_then(|_| one.to_f32_vec().map(drop))
                    .and_then(|_| cache.keys().to_f32_vec().map(drop));
                is_err(r, |e| {
                    matches!(
                        e,
                        Error::CacheOverflow {
                            batch: 0,
                            end: 52,
                            capacity: 48
                        }
                    )
                });
                let f = tensor(device, &[1.0, 2.0], &[b], DType::F32);
                let r = cache.append(
                    &one,
                    &one,
                    CachePosition::Device(&f),
                    AttentionLayout::HeadsFirst,
                );
                is_err(r, |e| matches!(e, Error::UnsupportedDType { .. }));
            } else {
                let r = cache.append(
                    &one,
                    &one,
                    CachePosition::Host(40),
                    AttentionLayout::HeadsFirst,
                );
                is_err(r, |e| {
                    matches!(
                        e,
                        Error::CacheOverflow {
                            end: 52,
                            capacity: 48,
                            ..
                        }
                    )
                });
            }
            let wrong = tensor(device, &vec![0.0; b * 3 * d], &[b, 3, 1, d], dtype);
            let r = cache.append(
                &wrong,
                &wrong,
                CachePosition::Host(0),
                AttentionLayout::HeadsFirst,
            );
            is_err(r, |e| matches!(e, Error::Shape { .. }));
        }
    }
}
backend_tests!(cache_decode_matches_prefill => cache_decode_matches_prefill_cpu, cache_decode_matches_prefill_gpu, cache_decode_matches_prefill_gpu_nosubgroups);

/// A 32768-token causal prefill (one head, head_dim 32), whose score matrix (4 GiB in f32)
/// could not be bound on any device, compared with the reference on sampled rows.
#[test]
fn long_prefill_32k_gpu() {
    if !large() {
        eprintln!("SKIPPED long_prefill_32k_gpu: set {LARGE}=1");
        return;
    }
    let Some(device) = gpu() else {
        return;
    };
    let (n, d) = (32768, 32);
    let q = random(n * d, 1);
    let k = random(n * d, 2);
    let v = random(n * d, 3);
    let qt = tensor(&device, &q, &[1, 1, n, d], DType::F32);
    let kt = tensor(&device, &k, &[1, 1, n, d], DType::F32);
    let vt = tensor(&device, &v, &[1, 1, n, d], DType::F32);
    let o = AttentionOptions {
        causal: true,
        ..Default::default()
    };
    let out = ops::attention(&qt, &kt, &vt, &o)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let scale = 1.0 / (d as f64).sqrt();
    for &i in &[0usize, 1, 4095, 16384, 32766, 32767] {
        let logits: Vec<f64> = (0..=i)
            .map(|j| {
                (0..d)
                    .map(|t| q[i * d + t] as f64 * k[j * d + t] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = logits.iter().map(|l| (l - mx).exp()).sum();
        let want: Vec<f64> = (0..d)
            .map(|t| {
                logits
                    .iter()
                    .enumerate()
                    .map(|(j, l)| (l - mx).exp() * v[j * d + t] as f64)
                    .sum::<f64>()
                    / sum
            })
            .collect();
        assert_close(
            &format!("32k row {i}"),
            &out[i * d..(i + 1) * d],
            &want,
            2e-5,
            1e-3,
        );
    }
}

/// Appends and attention in the `[batch, len, heads, dim]` layout.
fn cache_seq_first(device: &Device) {
    let (b, hq, hk, n, d) = (2, 4, 2, 9, 32);
    let q = random(b * hq * n * d, 90);
    let k = random(b * hk * n * d, 91);
    let v = random(b * hk * n * d, 92);
    let causal = AttentionOptions {
        causal: true,
        ..Default::default()
    };
    let full = ops::attention(
        &tensor(device, &q, &[b, hq, n, d], DType::F32),
        &tensor(device, &k, &[b, hk, n, d], DType::F32),
        &tensor(device, &v, &[b, hk, n, d], DType::F32),
        &causal,
    )
    .unwrap()
    .to_vec::<f32>()
    .unwrap();
    let mut cache = KvCache::new(device, b, hk, 16, d, d, DType::F32).unwrap();
    let kt = tensor(
        device,
        &to_seq_first(&k, b, hk, n, d),
        &[b, n, hk, d],
        DType::F32,
    );
    let vt = tensor(
        device,
        &to_seq_first(&v, b, hk, n, d),
        &[b, n, hk, d],
        DType::F32,
    );
    cache
        .append(&kt, &vt, CachePosition::Host(0), AttentionLayout::SeqFirst)
        .unwrap();
    let qt = tensor(
        device,
        &to_seq_first(&q, b, hq, n, d),
        &[b, n, hq, d],
        DType::F32,
    );
    let o = AttentionOptions {
        causal: true,
        layout: AttentionLayout::SeqFirst,
        ..Default::default()
    };
    let out = cache.attention(&qt, &o).unwrap().to_vec::<f32>().unwrap();
    let want: Vec<f64> = to_seq_first(&full, b, hq, n, d)
        .into_iter()
        .map(f64::from)
        .collect();
    assert_close("seq-first cache", &out, &want, 1e-5, 1e-5);
    assert_eq!(cache.len(), Some(n));
}
backend_tests!(cache_seq_first => cache_seq_first_cpu, cache_seq_first_gpu, cache_seq_first_gpu_nosubgroups);

/// The CPU output comes from the host buffer pool: every element is written, zeros for
/// the rows that see no key, even where the pooled buffer held NaN just before (outputs
/// of 1 MiB and up are pooled).
#[test]
fn every_output_element_is_written_cpu() {
    let device = Device::cpu();
    let (b, h, s, d) = (2, 4, 256, 128); // 2·4·256·128 f32 = 1 MiB out
    let n = b * h * s * d;
    drop(tensor(&device, &vec![f32::NAN; n], &[n], DType::F32));
    let q = tensor(&device, &random(n, 1), &[b, h, s, d], DType::F32);
    let k = tensor(&device, &random(n, 2), &[b, h, s, d], DType::F32);
    let v = tensor(&device, &random(n, 3), &[b, h, s, d], DType::F32);
    // batch 1 has no valid key at all: its rows must come out zero
    let lens = Tensor::from_slice(&device, &[s as u32, 0], &[2]).unwrap();
    let o = AttentionOptions {
        kv_lengths: Some(&lens),
        ..Default::default()
    };
    let out = ops::attention(&q, &k, &v, &o)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(
        out.iter().all(|x| x.is_finite()),
        "a stale NaN came through"
    );
    assert!(out[n / 2..].iter().all(|&x| x == 0.0));
}
