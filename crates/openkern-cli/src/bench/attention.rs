//! Benchmarks of fused attention: prefill (batch 1, 32 query heads over 8 kv heads,
//! head_dim 128, causal) and an encoder shape (12 heads, head_dim 64, no mask) as FLOP/s
//! counting only the unmasked work (4·head_dim per visible query-key pair), the issue's
//! two CPU targets against PyTorch, and decode (one token against a 1k..32k cache) as
//! bytes of K/V read per second against the copy probe. Beside each fused row: the
//! unfused path (matmul + softmax + matmul) on the same device, and on the CPU device
//! PyTorch's `scaled_dot_product_attention` (benches/peers/torch_sdpa.py), run right
//! after the openkern row so the two are interleaved on a noisy machine.
//!
//! `OPENKERN_BENCH_ATTENTION=<text>` keeps only the cases whose label contains the text
//! (`target`, `prefill`, `encoder`, `decode`, or more: `prefill h32/8 s1024`, `cache
//! 1024`; several separated by `|`), for quick reruns of one group; the shape list's rows are then left out.

use super::memory::{data, or_skip};
use super::{measure, parse_dtype, run_cases, BenchArgs, Bound, Row};
use openkern::ops::attention::{describe, AttentionOptions};
use openkern::ops::{self, MatmulOptions, SoftmaxOptions};
use openkern::{DType, Device, DeviceType, Tensor};

/// Seconds per run of `f`: one warm-up, then a loop sized to ~0.3 s (at least 2, at most
/// 50; `quick`: 2).
fn time(
    device: &Device,
    quick: bool,
    mut f: impl FnMut() -> openkern::Result<()>,
) -> openkern::Result<(f64, openkern::TimingSource)> {
    f()?;
    let probe = device.time(1, &mut f)?;
    let iters = if quick {
        2
    } else {
        (0.3 / probe.seconds.max(1e-6)).clamp(2.0, 50.0) as usize
    };
    let t = device.time(iters, f)?;
    Ok((t.seconds, t.source))
}

/// PyTorch SDPA's seconds per call on this CPU (the peer script), or None without torch.
fn torch_seconds(
    hq: usize,
    hk: usize,
    ql: usize,
    kl: usize,
    d: usize,
    causal: bool,
) -> Option<f64> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/peers/torch_sdpa.py"
    );
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg("--one")
        .args([hq, hk, ql, kl, d, causal as usize].map(|x| x.to_string()))
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// FLOPs of the unmasked work: 2·d for q·k plus 2·d for p·v per visible pair.
fn flops(hq: usize, ql: usize, kl: usize, d: usize, causal: bool) -> f64 {
    let visible: usize = if causal {
        (0..ql).map(|i| (i + kl - ql + 1).min(kl)).sum()
    } else {
        ql * kl
    };
    4.0 * (hq * visible * d) as f64
}

struct Shape {
    hq: usize,
    hk: usize,
    ql: usize,
    kl: usize,
    d: usize,
    causal: bool,
}

fn tensors(device: &Device, s: &Shape, dtype: DType) -> openkern::Result<[Tensor; 3]> {
    let t = |h: usize, l: usize, seed: usize| {
        Tensor::from_f32(device, &data(h * l * s.d, seed), &[1, h, l, s.d], dtype)
    };
    Ok([t(s.hq, s.ql, 1)?, t(s.hk, s.kl, 2)?, t(s.hk, s.kl, 3)?])
}

/// The unfused path: scores = q·kᵀ (grouped heads folded into rows), softmax, ·v.
fn unfused(q: &Tensor, k: &Tensor, v: &Tensor, s: &Shape) -> openkern::Result<()> {
    let g = s.hq / s.hk;
    let q = q.reshape(&[s.hk, g * s.ql, s.d])?;
    let k = k.reshape(&[s.hk, s.kl, s.d])?;
    let v = v.reshape(&[s.hk, s.kl, s.d])?;
    let scores = ops::matmul_with(
        &q,
        &k,
        &MatmulOptions {
            trans_b: true,
            ..Default::default()
        },
    )?;
    let p = ops::softmax_with(
        &scores.reshape(&[s.hk, g, s.ql, s.kl])?,
        &SoftmaxOptions {
            scale: 1.0 / (s.d as f32).sqrt(),
            causal: s.causal,
            mask: None,
        },
    )?;
    ops::matmul(&p.reshape(&[s.hk, g * s.ql, s.kl])?, &v).map(drop)
}

/// Whether the case labelled `label` is selected by `OPENKERN_BENCH_ATTENTION`.
fn selected(label: &str) -> bool {
    std::env::var("OPENKERN_BENCH_ATTENTION")
        .map_or(true, |f| f.split('|').any(|f| label.contains(f)))
}

/// The shape list's attention cases (one prefill and one decode row per model class,
/// `[heads, kv_heads, q_len, kv_len, head_dim]`, causal), the rows the peers time too.
fn model_rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    run_cases(args, "attention", |case| {
        let dtype = parse_dtype(&case.dtype);
        let &[hq, hk, ql, kl, d] = &case.shape[..] else {
            return Err(openkern::Error::Internal {
                message: format!("attention case shape {:?}", case.shape),
            });
        };
        let s = Shape {
            hq,
            hk,
            ql,
            kl,
            d,
            causal: true,
        };
        let [q, k, v] = tensors(device, &s, dtype)?;
        let o = AttentionOptions {
            causal: true,
            ..Default::default()
        };
        let what = describe(&q, &k, &v, &o)?;
        let t = measure(device, || ops::attention(&q, &k, &v, &o).map(drop))?;
        // the peers' formulas: every q-k pair (causal or not), q, k, v and the output once
        let flops = 4.0 * (hq * ql * kl * d) as f64;
        let bytes = ((2 * hq * ql * d + 2 * hk * kl * d) * dtype.size_in_bytes()) as f64;
        let bound = if ql == 1 {
            Bound::Memory
        } else {
            Bound::Compute
        };
        let mut row = Row::new(case, "attention", what, &t, flops, bytes, bound);
        super::burn::attach(device, args, case, &mut row, || {
            ops::attention(&q, &k, &v, &o).map(drop)
        })?;
        Ok(vec![row])
    })
}

pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    // OPENKERN_BENCH_ATTENTION picks among the fixed groups only
    let mut out = if std::env::var_os("OPENKERN_BENCH_ATTENTION").is_some() {
        Vec::new()
    } else {
        model_rows(device, args)?
    };
    // The fixed groups below (beside the unfused path and PyTorch) run when no filter or
    // one naming attention is given.
    let named = args
        .filter
        .as_deref()
        .is_none_or(|f| f.split(',').any(|f| "attention".contains(f)));
    if !named {
        return Ok(out);
    }
    // The model-sized shapes (seq to 8192, caches to 32k) only with --full: the default
    // tier must answer in about two minutes on a software adapter.
    let quick = !args.full;
    let cpu = device.info().device_type == DeviceType::Cpu;
    let sh = |hq, hk, ql, kl, d, causal| Shape {
        hq,
        hk,
        ql,
        kl,
        d,
        causal,
    };
    // (group label, shape)
    let mut prefill: Vec<(&str, Shape)> = Vec::new();
    if quick {
        prefill.push(("prefill", sh(8, 2, 256, 256, 64, true)));
        prefill.push(("encoder", sh(12, 12, 128, 128, 64, false)));
    } else {
        // the targets: CPU against PyTorch (both), lavapipe against Burn (the first)
        prefill.push(("target", sh(8, 8, 1024, 1024, 64, true)));
        if cpu {
            prefill.push(("target", sh(32, 32, 2048, 2048, 128, true)));
        }
        for s in [512, 1024, 2048, 4096, 8192] {
            prefill.push(("prefill", sh(32, 8, s, s, 128, true)));
        }
        for s in [128, 256, 512] {
            prefill.push(("encoder", sh(12, 12, s, s, 64, false)));
        }
    }
    for (label, s) in &prefill {
        let case = format!(
            "{label} h{}/{} s{} d{}{}",
            s.hq,
            s.hk,
            s.kl,
            s.d,
            if s.causal { " causal" } else { "" }
        );
        if !selected(&case) {
            continue;
        }
        let dtypes: &[DType] = if cpu || quick {
            &[DType::F32]
        } else {
            &[DType::F32, DType::F16]
        };
        for &dtype in dtypes {
            out.extend(or_skip(
                &case,
                (|| {
                    let [q, k, v] = tensors(device, s, dtype)?;
                    let o = AttentionOptions {
                        causal: s.causal,
                        ..Default::default()
                    };
                    let what = describe(&q, &k, &v, &o)?;
                    let work = flops(s.hq, s.ql, s.kl, s.d, s.causal);
                    let (fused, src) =
                        time(device, quick, || ops::attention(&q, &k, &v, &o).map(drop))?;
                    let mut rows = Vec::new();
                    // unfused beside it (its score matrix grows as s²: up to 2048 tokens,
                    // and 4096, the comparison, in host memory: 2 GiB of scores)
                    let unfused_rate = if s.kl <= 2048 || (cpu && s.kl <= 4096) {
                        let (t, _) = time(device, quick, || unfused(&q, &k, &v, s))?;
                        Some(work / t)
                    } else {
                        None
                    };
                    let peer = if cpu && dtype == DType::F32 {
                        torch_seconds(s.hq, s.hk, s.ql, s.kl, s.d, s.causal)
                            .map(|t| ("torch-sdpa", work / t))
                    } else {
                        None
                    };
                    rows.push(Row {
                        family: "attention",
                        case: format!("{case} {what}"),
                        dtype: dtype.name(),
                        seconds: fused,
                        work,
                        bound: Bound::Compute,
                        source: src,
                        peer: peer.or(unfused_rate.map(|r| ("unfused", r))),
                        kernel: "fused".into(),
                        flops: work,
                        ..Default::default()
                    });
                    if let (Some(r), Some(_)) = (unfused_rate, peer) {
                        rows.push(Row {
                            family: "attention",
                            case: format!("{case} unfused (matmul+softmax+matmul)"),
                            dtype: dtype.name(),
                            seconds: work / r,
                            work,
                            bound: Bound::Compute,
                            source: src,
                            peer: Some(("fused", work / fused)),
                            kernel: "matmul+softmax+matmul".into(),
                            flops: work,
                            ..Default::default()
                        });
                    }
                    Ok(rows)
                })(),
            )?);
        }
    }
    let caches: &[usize] = if quick {
        &[1024]
    } else {
        &[1024, 4096, 16384, 32768]
    };
    for &kl in caches {
        let s = sh(32, 8, 1, kl, 128, true);
        let case = format!("decode h32/8 cache {kl} d128");
        if !selected(&case) {
            continue;
        }
        for dtype in [DType::F32, DType::F16] {
            out.extend(or_skip(
                &case,
                (|| {
                    let [q, k, v] = tensors(device, &s, dtype)?;
                    let o = AttentionOptions {
                        causal: true,
                        ..Default::default()
                    };
                    let what = describe(&q, &k, &v, &o)?;
                    let bytes = (k.size_in_bytes() + v.size_in_bytes()) as f64;
                    let (t, src) =
                        time(device, quick, || ops::attention(&q, &k, &v, &o).map(drop))?;
                    let peer = if cpu && dtype == DType::F32 {
                        torch_seconds(32, 8, 1, kl, 128, true).map(|p| ("torch-sdpa", bytes / p))
                    } else {
                        None
                    };
                    Ok(vec![Row {
                        family: "attention",
                        case: format!("{case} {what}"),
                        dtype: dtype.name(),
                        seconds: t,
                        work: bytes,
                        bound: Bound::Memory,
                        source: src,
                        peer,
                        kernel: "fused decode".into(),
                        bytes,
                        ..Default::default()
                    }])
                })(),
            )?);
        }
    }
    Ok(out)
}
