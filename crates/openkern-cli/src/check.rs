//! `openkern check`: every op family on every adapter (and the CPU device) against a
//! reference computed in f64 on the host, on small odd shapes, so a user can see that
//! their adapter computes the right numbers before trusting it. One pass/fail table per
//! device with the worst error per op, then a summary; the command fails (non-zero exit)
//! when any check fails anywhere.
//!
//! The cases live in one list, [`CHECKS`], each tagged with its family in
//! [`openkern::ops::FAMILIES`]; a test fails when a library family has no case.
//!
//! **Error measure.** For each output element, `|got − want| / (1 + |want|)` (absolute
//! near zero, relative for large values); the worst over the output is compared with the
//! case's tolerance: two roundings to the output dtype (`2 · DType::epsilon`, the
//! output's own and one intermediate) plus the f32 arithmetic's error, a multiple of f32's
//! unit roundoff sized to the work (a few for elementwise ops, 16 for transcendentals and
//! row reductions, 64 for dot products and RoPE's f32 angles). Inputs are the
//! values the device stores (read back after upload), so the reference sees exactly the
//! rounded inputs the kernel saw. Exact ops (layout copies, gathers, argmax) must match
//! bit for bit.

use openkern::ops::attention::{AttentionLayout, AttentionOptions};
use openkern::ops::kv_cache::{CachePosition, KvCache};
use openkern::{ops, DType, Device, DeviceSelector, Tensor};

/// `OPENKERN_CHECK_TOLERANCE_SCALE=<f64>` multiplies every tolerance (hidden; 0 makes
/// every inexact case fail, to see the failure path and the exit code end to end).
const TOLERANCE_SCALE_ENV: &str = "OPENKERN_CHECK_TOLERANCE_SCALE";

/// What one case computed: the device's output, the f64 reference, and the error the
/// f32 arithmetic may add, in units of f32's unit roundoff (0: the op is exact).
struct Outcome {
    got: Vec<f64>,
    want: Vec<f64>,
    ulps: f64,
}

type CheckFn = fn(&Device, DType) -> openkern::Result<Outcome>;

/// One case: its op family (a name in `openkern::ops::FAMILIES`), a label, the run.
struct Check {
    family: &'static str,
    name: &'static str,
    run: CheckFn,
}

/// One line of a device's table.
#[derive(Debug)]
pub struct Line {
    /// The op family.
    pub family: &'static str,
    /// The case.
    pub name: &'static str,
    /// The dtype it ran in.
    pub dtype: DType,
    /// Worst error as measured in the module docs (NaN when the case errored).
    pub worst: f64,
    /// The tolerance it was held to.
    pub tolerance: f64,
    /// Passed, or why not.
    pub failure: Option<String>,
}

/// Checks every adapter and the CPU device (`default`), or the one `selector` names,
/// printing a table per device and a summary; fails when any case failed anywhere.
pub fn run_all(selector: &str) -> openkern::Result<()> {
    let scale = std::env::var(TOLERANCE_SCALE_ENV)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    run_all_scaled(selector, scale)
}

fn run_all_scaled(selector: &str, scale: f64) -> openkern::Result<()> {
    let devices: Vec<(String, openkern::Result<Device>)> = if selector == "default" {
        let mut v: Vec<(String, openkern::Result<Device>)> = Device::adapters()
            .iter()
            .map(|a| {
                (
                    format!("[{}] {} ({})", a.index, a.name, a.backend),
                    Device::open(DeviceSelector::Adapter(a.index)),
                )
            })
            .collect();
        if v.is_empty() {
            println!("no wgpu adapter found; checking the CPU device only");
        }
        v.push(("cpu".into(), Ok(Device::cpu())));
        v
    } else {
        vec![(selector.to_string(), crate::open(selector))]
    };
    let mut summary: Vec<(String, usize, Vec<String>)> = Vec::new();
    for (label, device) in devices {
        let device = match device {
            Ok(d) => d,
            Err(e) => {
                println!("{label}: could not open: {e}\n");
                summary.push((label, 0, vec![format!("open: {e}")]));
                continue;
            }
        };
        let lines = check_device(&device, scale);
        let failed: Vec<String> = lines
            .iter()
            .filter(|l| l.failure.is_some())
            .map(|l| format!("{} {}", l.name, l.dtype.name()))
            .collect();
        summary.push((
            format!("{} ({})", device.info().name, device.info().backend),
            lines.len(),
            failed,
        ));
        println!();
    }
    println!("{:<48} {:>6} {:>7}  result", "device", "checks", "failed");
    let mut all = true;
    for (label, n, failed) in &summary {
        all &= failed.is_empty();
        println!(
            "{label:<48} {n:>6} {:>7}  {}",
            failed.len(),
            match failed.len() {
                0 => "PASS".to_string(),
                1..=6 => format!("FAIL: {}", failed.join(", ")),
                n => format!("FAIL: {}, and {} more", failed[..6].join(", "), n - 6),
            }
        );
    }
    if all {
        println!("\nall checks passed");
        Ok(())
    } else {
        Err(openkern::Error::Gpu {
            device: "check".into(),
            message: "some checks failed (see the tables above)".into(),
        })
    }
}

/// Runs every case in every float dtype on `device`, printing its table; tolerances are
/// multiplied by `scale`.
pub fn check_device(device: &Device, scale: f64) -> Vec<Line> {
    let info = device.info();
    println!(
        "checking {} ({}) against f64 references\n",
        info.name, info.backend
    );
    println!(
        "{:<12} {:<34} {:<5} {:>10} {:>10}  result",
        "family", "op", "dtype", "worst err", "tolerance"
    );
    let mut lines = Vec::new();
    for dtype in DType::ALL {
        for c in CHECKS {
            let line = match (c.run)(device, dtype) {
                Ok(o) => judge(c, dtype, &o, scale),
                Err(e) => Line {
                    family: c.family,
                    name: c.name,
                    dtype,
                    worst: f64::NAN,
                    tolerance: 0.0,
                    failure: Some(format!("error: {e}")),
                },
            };
            println!(
                "{:<12} {:<34} {:<5} {:>10.2e} {:>10.2e}  {}",
                line.family,
                line.name,
                dtype.name(),
                line.worst,
                line.tolerance,
                match &line.failure {
                    None => "ok".to_string(),
                    Some(why) => format!("FAIL {why}"),
                }
            );
            lines.push(line);
        }
    }
    lines
}

fn judge(c: &Check, dtype: DType, o: &Outcome, scale: f64) -> Line {
    let tolerance = if o.ulps == 0.0 {
        0.0
    } else {
        (2.0 * dtype.epsilon() + o.ulps * DType::F32.epsilon()) * scale
    };
    let mut worst = 0f64;
    let mut failure = None;
    if o.got.len() != o.want.len() {
        failure = Some(format!(
            "{} elements, reference has {}",
            o.got.len(),
            o.want.len()
        ));
    }
    for (i, (&g, &w)) in o.got.iter().zip(&o.want).enumerate() {
        let err = if g == w || (g.is_nan() && w.is_nan()) {
            0.0
        } else {
            (g - w).abs() / (1.0 + w.abs())
        };
        let err = if err.is_nan() { f64::INFINITY } else { err };
        if err > worst {
            worst = err;
            if err > tolerance && failure.is_none() {
                failure = Some(format!("element {i}: {g} vs {w}"));
            }
        }
    }
    if worst > tolerance && failure.is_none() {
        failure = Some("over tolerance".into());
    }
    Line {
        family: c.family,
        name: c.name,
        dtype,
        worst,
        tolerance,
        failure,
    }
}

// ---------------------------------------------------------------- inputs and helpers

/// Deterministic values in [-1, 1).
fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A `dtype` tensor of `shape` from `values`, and the values it holds (read back).
fn upload(
    device: &Device,
    values: &[f32],
    shape: &[usize],
    dtype: DType,
) -> openkern::Result<(Tensor, Vec<f64>)> {
    let t = Tensor::from_f32(device, values, shape, dtype)?;
    let held = read(&t)?;
    Ok((t, held))
}

/// A random `dtype` input of `shape`.
fn input(
    device: &Device,
    shape: &[usize],
    seed: u64,
    dtype: DType,
) -> openkern::Result<(Tensor, Vec<f64>)> {
    upload(
        device,
        &pseudo_random(shape.iter().product(), seed),
        shape,
        dtype,
    )
}

fn read(t: &Tensor) -> openkern::Result<Vec<f64>> {
    Ok(t.to_f32_vec()?.into_iter().map(f64::from).collect())
}

fn outcome(got: &Tensor, want: Vec<f64>, ulps: f64) -> openkern::Result<Outcome> {
    Ok(Outcome {
        got: read(got)?,
        want,
        ulps,
    })
}

/// `x` rounded to nearest even with `mantissa` explicit bits and smallest normal
/// exponent `min_exp` (f16: 10, −14; bf16: 7, −126): the reference of a cast.
fn round_to(x: f64, mantissa: i32, min_exp: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = (x.abs().log2().floor() as i32).max(min_exp);
    let ulp = 2f64.powi(e - mantissa);
    (x / ulp).round_ties_even() * ulp
}

fn rounded(x: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F16 => round_to(x, 10, -14),
        DType::BF16 => round_to(x, 7, -126),
        _ => x as f32 as f64,
    }
}

/// Applies `f` to each row of `n` elements.
fn rows(x: &[f64], n: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    x.chunks(n).flat_map(f).collect()
}

fn erf(x: f64) -> f64 {
    // Maclaurin series: plenty for |x| <= 3 (inputs here are in [-1, 1))
    let mut term = x;
    let mut sum = x;
    for n in 1..60 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn softmax_row(r: &[f64]) -> Vec<f64> {
    let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = r.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// `a [batch, m, k] · b [k, n]` (or `b [n, k]` with `trans_b`).
fn matmul_ref(
    a: &[f64],
    b: &[f64],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    trans_b: bool,
) -> Vec<f64> {
    let mut out = vec![0.0; batch * m * n];
    for bt in 0..batch {
        for i in 0..m {
            for j in 0..n {
                out[(bt * m + i) * n + j] = (0..k)
                    .map(|p| {
                        let bv = if trans_b { b[j * k + p] } else { b[p * n + j] };
                        a[(bt * m + i) * k + p] * bv
                    })
                    .sum();
            }
        }
    }
    out
}

/// Attention of q `[hq, ql, d]` over k, v `[hk, kl, d]` (one batch entry), causal aligned
/// to the end of the keys, scale 1/√d.
fn attention_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (hq, hk): (usize, usize),
    (ql, kl): (usize, usize),
    d: usize,
) -> Vec<f64> {
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = Vec::with_capacity(hq * ql * d);
    for h in 0..hq {
        let kh = h / (hq / hk);
        for i in 0..ql {
            let visible = i + kl - ql + 1;
            let qi = &q[(h * ql + i) * d..][..d];
            let scores: Vec<f64> = (0..visible)
                .map(|j| {
                    let kj = &k[(kh * kl + j) * d..][..d];
                    scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                })
                .collect();
            let p = softmax_row(&scores);
            for c in 0..d {
                out.push((0..visible).map(|j| p[j] * v[(kh * kl + j) * d + c]).sum());
            }
        }
    }
    out
}

// ---------------------------------------------------------------- the cases

/// Every case, each tagged with its op family.
static CHECKS: &[Check] = &[
    Check {
        family: "elementwise",
        name: "add (3x17x65 + 65 broadcast)",
        run: |d, dt| {
            let (a, av) = input(d, &[3, 17, 65], 1, dt)?;
            let (b, bv) = input(d, &[65], 2, dt)?;
            let want = av.iter().enumerate().map(|(i, x)| x + bv[i % 65]).collect();
            outcome(&ops::add(&a, &b)?, want, 1.0)
        },
    },
    Check {
        family: "elementwise",
        name: "mul (3x17x65 * 17x65)",
        run: |d, dt| {
            let (a, av) = input(d, &[3, 17, 65], 1, dt)?;
            let (b, bv) = input(d, &[17, 65], 2, dt)?;
            let want = av
                .iter()
                .enumerate()
                .map(|(i, x)| x * bv[i % (17 * 65)])
                .collect();
            outcome(&ops::mul(&a, &b)?, want, 1.0)
        },
    },
    Check {
        family: "elementwise",
        name: "div_scalar (7x257 / 3)",
        run: |d, dt| {
            let (a, av) = input(d, &[7, 257], 3, dt)?;
            outcome(
                &ops::div_scalar(&a, 3.0)?,
                av.iter().map(|x| x / 3.0).collect(),
                2.0,
            )
        },
    },
    Check {
        family: "cast",
        name: "cast f32 -> dtype (7x257)",
        run: |d, dt| {
            let v = pseudo_random(7 * 257, 4);
            let x = Tensor::from_f32(d, &v, &[7, 257], DType::F32)?;
            let want = v.iter().map(|&x| rounded(x as f64, dt)).collect();
            outcome(&x.cast(dt)?, want, 0.0)
        },
    },
    Check {
        family: "cast",
        name: "cast dtype -> f32 -> dtype (7x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[7, 257], 5, dt)?;
            outcome(&x.cast(DType::F32)?.cast(dt)?, xv, 0.0)
        },
    },
    Check {
        family: "unary",
        name: "exp, tanh, sigmoid (7x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[3, 257], 6, dt)?;
            let got = ops::concat(&[&ops::exp(&x)?, &ops::tanh(&x)?, &ops::sigmoid(&x)?], 0)?;
            let mut want: Vec<f64> = xv.iter().map(|v| v.exp()).collect();
            want.extend(xv.iter().map(|v| v.tanh()));
            want.extend(xv.iter().map(|v| 1.0 / (1.0 + (-v).exp())));
            outcome(&got, want, 16.0)
        },
    },
    Check {
        family: "unary",
        name: "log, sqrt, rsqrt of |x|+0.05 (3x257)",
        run: |d, dt| {
            let v: Vec<f32> = pseudo_random(3 * 257, 7)
                .iter()
                .map(|x| x.abs() + 0.05)
                .collect();
            let (x, xv) = upload(d, &v, &[3, 257], dt)?;
            let got = ops::concat(&[&ops::log(&x)?, &ops::sqrt(&x)?, &ops::rsqrt(&x)?], 0)?;
            let mut want: Vec<f64> = xv.iter().map(|v| v.ln()).collect();
            want.extend(xv.iter().map(|v| v.sqrt()));
            want.extend(xv.iter().map(|v| 1.0 / v.sqrt()));
            outcome(&got, want, 16.0)
        },
    },
    Check {
        family: "unary",
        name: "neg, abs, clamp(-0.5, 0.5) (3x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[3, 257], 8, dt)?;
            let got = ops::concat(
                &[&ops::neg(&x)?, &ops::abs(&x)?, &ops::clamp(&x, -0.5, 0.5)?],
                0,
            )?;
            let mut want: Vec<f64> = xv.iter().map(|v| -v).collect();
            want.extend(xv.iter().map(|v| v.abs()));
            want.extend(xv.iter().map(|v| v.clamp(-0.5, 0.5)));
            outcome(&got, want, 0.0)
        },
    },
    Check {
        family: "activation",
        name: "gelu, gelu_tanh, silu, relu (4x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[1, 257], 9, dt)?;
            let got = ops::concat(
                &[
                    &ops::gelu(&x)?,
                    &ops::gelu_tanh(&x)?,
                    &ops::silu(&x)?,
                    &ops::relu(&x)?,
                ],
                0,
            )?;
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let mut want: Vec<f64> = xv
                .iter()
                .map(|v| 0.5 * v * (1.0 + erf(v / 2f64.sqrt())))
                .collect();
            want.extend(
                xv.iter()
                    .map(|v| 0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())),
            );
            want.extend(xv.iter().map(|&v| silu(v)));
            want.extend(xv.iter().map(|v| v.max(0.0)));
            outcome(&got, want, 16.0)
        },
    },
    Check {
        family: "activation",
        name: "swiglu (7x257)",
        run: |d, dt| {
            let (g, gv) = input(d, &[7, 257], 10, dt)?;
            let (u, uv) = input(d, &[7, 257], 11, dt)?;
            let want = gv.iter().zip(&uv).map(|(&g, u)| silu(g) * u).collect();
            outcome(&ops::swiglu(&g, &u)?, want, 16.0)
        },
    },
    Check {
        family: "softmax",
        name: "softmax (7x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[7, 257], 12, dt)?;
            outcome(&ops::softmax(&x)?, rows(&xv, 257, softmax_row), 16.0)
        },
    },
    Check {
        family: "softmax",
        name: "softmax causal, scale 0.5 (2x7x9)",
        run: |d, dt| {
            let (x, xv) = input(d, &[2, 7, 9], 13, dt)?;
            let o = ops::SoftmaxOptions {
                scale: 0.5,
                causal: true,
                mask: None,
            };
            let mut want = Vec::new();
            for (r, row) in xv.chunks(9).enumerate() {
                // causal aligned to the end: query i sees keys j <= i + 9 - 7
                let visible = r % 7 + 3;
                let p = softmax_row(&row[..visible].iter().map(|v| 0.5 * v).collect::<Vec<_>>());
                want.extend(p);
                want.extend(std::iter::repeat_n(0.0, 9 - visible));
            }
            outcome(&ops::softmax_with(&x, &o)?, want, 16.0)
        },
    },
    Check {
        family: "softmax",
        name: "log_softmax (7x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[7, 257], 14, dt)?;
            let want = rows(&xv, 257, |r| {
                softmax_row(r).iter().map(|p| p.ln()).collect()
            });
            outcome(&ops::log_softmax(&x)?, want, 16.0)
        },
    },
    Check {
        family: "norm",
        name: "rms_norm (7x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[7, 257], 15, dt)?;
            let (w, wv) = input(d, &[257], 16, dt)?;
            let want = rows(&xv, 257, |r| {
                let s = (r.iter().map(|v| v * v).sum::<f64>() / 257.0 + 1e-6).sqrt();
                r.iter().zip(&wv).map(|(v, w)| v / s * w).collect()
            });
            outcome(&ops::rms_norm(&x, &w, 1e-6)?, want, 16.0)
        },
    },
    Check {
        family: "norm",
        name: "layer_norm (7x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[7, 257], 17, dt)?;
            let (w, wv) = input(d, &[257], 18, dt)?;
            let (b, bv) = input(d, &[257], 19, dt)?;
            let want = rows(&xv, 257, |r| {
                let mean = r.iter().sum::<f64>() / 257.0;
                let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 257.0;
                let s = (var + 1e-5).sqrt();
                (0..257)
                    .map(|i| (r[i] - mean) / s * wv[i] + bv[i])
                    .collect()
            });
            outcome(&ops::layer_norm(&x, &w, &b, 1e-5)?, want, 16.0)
        },
    },
    Check {
        family: "norm",
        name: "add_rms_norm sum and normed (7x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[7, 257], 20, dt)?;
            let (r, rv) = input(d, &[7, 257], 21, dt)?;
            let (w, wv) = input(d, &[257], 22, dt)?;
            let out = ops::add_rms_norm(&x, &r, &w, 1e-6)?;
            let h: Vec<f64> = xv.iter().zip(&rv).map(|(a, b)| a + b).collect();
            let mut want = h.clone();
            want.extend(rows(&h, 257, |r| {
                let s = (r.iter().map(|v| v * v).sum::<f64>() / 257.0 + 1e-6).sqrt();
                r.iter().zip(&wv).map(|(v, w)| v / s * w).collect()
            }));
            let got = ops::concat(&[&out.sum, &out.normed], 0)?;
            outcome(&got, want, 16.0)
        },
    },
    Check {
        family: "norm",
        name: "l2_normalize (7x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[7, 257], 23, dt)?;
            let want = rows(&xv, 257, |r| {
                let s = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                r.iter().map(|v| v / s).collect()
            });
            outcome(&ops::l2_normalize(&x, 1e-12)?, want, 16.0)
        },
    },
    Check {
        family: "rope",
        name: "rope halves, offset 17 (3x4x64)",
        run: |d, dt| rope_case(d, dt, ops::RopeLayout::Halves),
    },
    Check {
        family: "rope",
        name: "rope interleaved, offset 17 (3x4x64)",
        run: |d, dt| rope_case(d, dt, ops::RopeLayout::Interleaved),
    },
    Check {
        family: "embedding",
        name: "embedding (5 ids of 7x257)",
        run: |d, dt| {
            let (t, tv) = input(d, &[7, 257], 24, dt)?;
            let ids = [3u32, 0, 6, 6, 1];
            let got = ops::embedding(&Tensor::from_slice(d, &ids, &[5])?, &t)?;
            let want = ids
                .iter()
                .flat_map(|&i| tv[i as usize * 257..][..257].to_vec())
                .collect();
            outcome(&got, want, 0.0)
        },
    },
    Check {
        family: "reduce",
        name: "sum, mean over last dim (7x257)",
        run: |d, dt| {
            let (x, xv) = input(d, &[7, 257], 25, dt)?;
            let got = ops::concat(&[&ops::sum(&x)?, &ops::mean(&x)?], 0)?;
            let mut want = rows(&xv, 257, |r| vec![r.iter().sum()]);
            want.extend(rows(&xv, 257, |r| vec![r.iter().sum::<f64>() / 257.0]));
            outcome(&got, want, 32.0)
        },
    },
    Check {
        family: "reduce",
        name: "sum_dim 1, max_dim 0, min_dim 2 (3x17x5)",
        run: |d, dt| {
            let (x, xv) = input(d, &[3, 17, 5], 26, dt)?;
            let at = |a: usize, b: usize, c: usize| xv[(a * 17 + b) * 5 + c];
            let got = [
                ops::sum_dim(&x, 1, false)?.reshape(&[15])?,
                ops::max_dim(&x, 0, true)?.reshape(&[85])?,
                ops::min_dim(&x, 2, false)?.reshape(&[51])?,
            ];
            let got = ops::concat(&[&got[0], &got[1], &got[2]], 0)?;
            let mut want: Vec<f64> = Vec::new();
            for a in 0..3 {
                for c in 0..5 {
                    want.push((0..17).map(|b| at(a, b, c)).sum());
                }
            }
            for b in 0..17 {
                for c in 0..5 {
                    want.push((0..3).map(|a| at(a, b, c)).fold(f64::MIN, f64::max));
                }
            }
            for a in 0..3 {
                for b in 0..17 {
                    want.push((0..5).map(|c| at(a, b, c)).fold(f64::MAX, f64::min));
                }
            }
            outcome(&got, want, 32.0)
        },
    },
    Check {
        family: "reduce",
        name: "argmax_dim 1 (3x17x5)",
        run: |d, dt| {
            let (x, xv) = input(d, &[3, 17, 5], 27, dt)?;
            let got = ops::argmax_dim(&x, 1, false)?.to_vec::<u32>()?;
            let mut want = Vec::new();
            for a in 0..3 {
                for c in 0..5 {
                    // the first of equal maxima
                    let col: Vec<f64> = (0..17).map(|b| xv[(a * 17 + b) * 5 + c]).collect();
                    let m = col.iter().cloned().fold(f64::MIN, f64::max);
                    want.push(col.iter().position(|&v| v == m).unwrap_or(0) as f64);
                }
            }
            Ok(Outcome {
                got: got.into_iter().map(f64::from).collect(),
                want,
                ulps: 0.0,
            })
        },
    },
    Check {
        family: "layout",
        name: "permute [2,0,1], concat dim 1 (3x17x5)",
        run: |d, dt| {
            let (x, xv) = input(d, &[3, 17, 5], 28, dt)?;
            let p = ops::permute(&x, &[2, 0, 1])?.reshape(&[255])?;
            let c = ops::concat(&[&x, &x], 1)?.reshape(&[510])?;
            let mut want = Vec::new();
            for k in 0..5 {
                for a in 0..3 {
                    for b in 0..17 {
                        want.push(xv[(a * 17 + b) * 5 + k]);
                    }
                }
            }
            for a in 0..3 {
                for _ in 0..2 {
                    want.extend_from_slice(&xv[a * 85..(a + 1) * 85]);
                }
            }
            outcome(&ops::concat(&[&p, &c], 0)?, want, 0.0)
        },
    },
    Check {
        family: "layout",
        name: "narrow, split QKV, chunk (5x3x21)",
        run: |d, dt| {
            let (x, xv) = input(d, &[5, 3 * 21], 29, dt)?;
            // a fused QKV row split along the last dim (copies), rows 1..4 (a view), and
            // columns 5..12 of those (a strided block of a view)
            let qkv = ops::split(&x, &[21, 21, 21], 1)?;
            let rows_ = ops::chunk(&x, 2, 0)?;
            let block = ops::narrow(&ops::narrow(&x, 0, 1, 3)?, 1, 5, 7)?;
            let flat = |t: &Tensor| t.reshape(&[t.len()]);
            let got = ops::concat(
                &[
                    &flat(&qkv[0])?,
                    &flat(&qkv[1])?,
                    &flat(&qkv[2])?,
                    &flat(&rows_[1])?,
                    &flat(&block)?,
                ],
                0,
            )?;
            let mut want = Vec::new();
            for p in 0..3 {
                for r in 0..5 {
                    want.extend_from_slice(&xv[r * 63 + p * 21..][..21]);
                }
            }
            want.extend_from_slice(&xv[3 * 63..]);
            for r in 1..4 {
                want.extend_from_slice(&xv[r * 63 + 5..][..7]);
            }
            outcome(&got, want, 0.0)
        },
    },
    Check {
        family: "matmul",
        name: "matmul batched (3x17x65 . 65x33)",
        run: |d, dt| {
            let (a, av) = input(d, &[3, 17, 65], 30, dt)?;
            let (b, bv) = input(d, &[65, 33], 31, dt)?;
            let want = matmul_ref(&av, &bv, 3, 17, 65, 33, false);
            outcome(&ops::matmul(&a, &b)?, want, 64.0)
        },
    },
    Check {
        family: "matmul",
        name: "linear + bias + silu (51x65 . 33x65^T)",
        run: |d, dt| {
            let (a, av) = input(d, &[51, 65], 32, dt)?;
            let (w, wv) = input(d, &[33, 65], 33, dt)?;
            let (b, bv) = input(d, &[33], 34, DType::F32)?;
            let want = matmul_ref(&av, &wv, 1, 51, 65, 33, true)
                .iter()
                .enumerate()
                .map(|(i, v)| silu(v + bv[i % 33]))
                .collect();
            let got = ops::linear(&a, &w, Some(&b), Some(ops::Activation::Silu))?;
            outcome(&got, want, 64.0)
        },
    },
    Check {
        family: "matmul",
        name: "gemv (1x257 . 33x257^T)",
        run: |d, dt| {
            let (a, av) = input(d, &[1, 257], 35, dt)?;
            let (w, wv) = input(d, &[33, 257], 36, dt)?;
            let want = matmul_ref(&av, &wv, 1, 1, 257, 33, true);
            outcome(&ops::linear(&a, &w, None, None)?, want, 64.0)
        },
    },
    Check {
        family: "attention",
        name: "attention GQA causal (4/2 heads, 7x7, d16)",
        run: |d, dt| attention_case(d, dt, 7, 7),
    },
    Check {
        family: "attention",
        name: "attention decode (4/2 heads, 1x33, d16)",
        run: |d, dt| attention_case(d, dt, 1, 33),
    },
    Check {
        family: "attention",
        name: "kv cache append 5+2, attend 2 (4/2 heads)",
        run: |d, dt| {
            let (hq, hk, hd) = (4, 2, 16);
            let mut cache = KvCache::new(d, 1, hk, 11, hd, hd, dt)?;
            let (k1, k1v) = input(d, &[1, hk, 5, hd], 40, dt)?;
            let (v1, v1v) = input(d, &[1, hk, 5, hd], 41, dt)?;
            let (k2, k2v) = input(d, &[1, hk, 2, hd], 42, dt)?;
            let (v2, v2v) = input(d, &[1, hk, 2, hd], 43, dt)?;
            cache.append(
                &k1,
                &v1,
                CachePosition::Host(0),
                AttentionLayout::HeadsFirst,
            )?;
            cache.append(
                &k2,
                &v2,
                CachePosition::Host(5),
                AttentionLayout::HeadsFirst,
            )?;
            let (q, qv) = input(d, &[1, hq, 2, hd], 44, dt)?;
            let o = AttentionOptions {
                causal: true,
                ..Default::default()
            };
            // the reference cache: per head, rows 0..5 then 5..7
            let join = |a: &[f64], b: &[f64]| -> Vec<f64> {
                (0..hk)
                    .flat_map(|h| {
                        let mut r = a[h * 5 * hd..(h + 1) * 5 * hd].to_vec();
                        r.extend_from_slice(&b[h * 2 * hd..(h + 1) * 2 * hd]);
                        r
                    })
                    .collect()
            };
            let want = attention_ref(
                &qv,
                &join(&k1v, &k2v),
                &join(&v1v, &v2v),
                (hq, hk),
                (2, 7),
                hd,
            );
            outcome(&cache.attention(&q, &o)?, want, 64.0)
        },
    },
];

fn rope_case(d: &Device, dt: DType, layout: ops::RopeLayout) -> openkern::Result<Outcome> {
    let (seq, heads, hd, offset) = (3, 4, 64, 17);
    let (x, xv) = input(d, &[seq, heads, hd], 37, dt)?;
    let o = ops::RopeOptions {
        offset,
        layout,
        ..Default::default()
    };
    let mut want = xv.clone();
    for s in 0..seq {
        for h in 0..heads {
            let base = (s * heads + h) * hd;
            for i in 0..hd / 2 {
                let angle = (offset + s) as f64 * 10_000f64.powf(-2.0 * i as f64 / hd as f64);
                let (a, b) = match layout {
                    ops::RopeLayout::Halves => (base + i, base + i + hd / 2),
                    ops::RopeLayout::Interleaved => (base + 2 * i, base + 2 * i + 1),
                };
                let (c, sn) = (angle.cos(), angle.sin());
                want[a] = xv[a] * c - xv[b] * sn;
                want[b] = xv[b] * c + xv[a] * sn;
            }
        }
    }
    // the library computes the angle in f32 (as transformers does): a few ulps of it
    outcome(&ops::rope(&x, &o)?, want, 64.0)
}

fn attention_case(d: &Device, dt: DType, ql: usize, kl: usize) -> openkern::Result<Outcome> {
    let (hq, hk, hd) = (4, 2, 16);
    let (q, qv) = input(d, &[1, hq, ql, hd], 38, dt)?;
    let (k, kv) = input(d, &[1, hk, kl, hd], 39, dt)?;
    let (v, vv) = input(d, &[1, hk, kl, hd], 45, dt)?;
    let o = AttentionOptions {
        causal: true,
        ..Default::default()
    };
    let want = attention_ref(&qv, &kv, &vv, (hq, hk), (ql, kl), hd);
    outcome(&ops::attention(&q, &k, &v, &o)?, want, 64.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every op family the library registers has a check case, so a new family cannot be
    /// left out of `openkern check` unnoticed.
    #[test]
    fn every_library_op_family_is_checked() {
        for family in openkern::ops::FAMILIES {
            assert!(
                CHECKS.iter().any(|c| c.family == family.name),
                "op family {} has no case in openkern check: add one to CHECKS in check.rs",
                family.name
            );
        }
        for c in CHECKS {
            assert!(
                openkern::ops::FAMILIES.iter().any(|f| f.name == c.family),
                "check {} names family {}, which the library does not register",
                c.name,
                c.family
            );
        }
    }

    #[test]
    fn every_case_passes_on_the_cpu_device() {
        let lines = check_device(&Device::cpu(), 1.0);
        let failed: Vec<_> = lines.iter().filter(|l| l.failure.is_some()).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert_eq!(lines.len(), CHECKS.len() * DType::ALL.len());
    }

    /// The same on every adapter (lavapipe in CI); `OPENKERN_REQUIRE_GPU=1` makes a
    /// machine without one a failure rather than a silent pass.
    #[test]
    fn every_case_passes_on_every_adapter() {
        let adapters = Device::adapters();
        if adapters.is_empty() {
            assert!(
                std::env::var_os("OPENKERN_REQUIRE_GPU").is_none(),
                "OPENKERN_REQUIRE_GPU is set but no adapter was found"
            );
            eprintln!("every_case_passes_on_every_adapter: SKIPPED, no GPU adapter");
            return;
        }
        for a in adapters {
            let device = Device::open(DeviceSelector::Adapter(a.index)).expect("open adapter");
            let lines = check_device(&device, 1.0);
            let failed: Vec<_> = lines.iter().filter(|l| l.failure.is_some()).collect();
            assert!(failed.is_empty(), "{}: {failed:#?}", a.name);
        }
    }

    /// A tolerance too tight for the real errors fails the cases and the command.
    #[test]
    fn a_failing_case_fails_the_command() {
        let lines = check_device(&Device::cpu(), 1e-6);
        assert!(lines.iter().any(|l| l.failure.is_some()));
        // exact cases still pass: their error is 0
        assert!(lines
            .iter()
            .any(|l| l.family == "layout" && l.failure.is_none()));
        assert!(run_all_scaled("cpu", 1e-6).is_err());
        assert!(run_all_scaled("cpu", 1.0).is_ok());
    }

    #[test]
    fn cast_reference_rounds_to_nearest_even() {
        // 1 + 2^-11 is halfway between two f16 values: ties to the even one (1.0)
        assert_eq!(round_to(1.0 + 2f64.powi(-11), 10, -14), 1.0);
        assert_eq!(
            round_to(1.0 + 3.0 * 2f64.powi(-11), 10, -14),
            1.0 + 2f64.powi(-9)
        );
        // f16 subnormals step by 2^-24
        assert_eq!(
            round_to(3.4 * 2f64.powi(-24), 10, -14),
            3.0 * 2f64.powi(-24)
        );
        assert_eq!(round_to(1.0 + 2f64.powi(-8), 7, -126), 1.0);
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-15);
    }
}
