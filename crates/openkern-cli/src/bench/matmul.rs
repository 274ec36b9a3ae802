//! The matmul families on the model shapes: `linear` (prefill, `x [tokens, in] · W[out,
//! in]ᵀ`, GFLOP/s against the FMA probe), `gemv` (decode, one token: the weight is read
//! once, GB/s against the copy probe) for each projection of a layer (qkv, o, ffn up —
//! gate and up are the same shape — and ffn down), and the square `gemm` sweep. The
//! kernel column is `ops::matmul::describe`. Autotune runs first where the adapter has
//! no cached tile choice. The `linear-torch` family ([`torch_rows`]) times `linear` with
//! bias on the encoder's small-M shapes and the 135M LLaMA's prefill shapes beside
//! PyTorch's `F.linear` in the same run.
//!
//! The `linear_epilogue` rows ([`epilogue_rows`]) time the fused bias/activation
//! epilogue against the same linear without it plus a separate pass of that epilogue,
//! all in the same run, on BERT-encoder shapes.

use super::memory::data;
use super::peer::{alternating, PeerProcess};
use super::shapes::{Case, Tier};
use super::{
    bar, kernel_label, measure, parse_dtype, run_cases, run_list, skip, BenchArgs, Bound, Row,
    Sampled,
};
use openkern::ops::{self, Activation, MatmulKernel, MatmulOptions};
use openkern::{DType, Device, Tensor};

fn tune(device: &Device) -> openkern::Result<()> {
    if !openkern::autotune::needs_tuning(device) {
        return Ok(());
    }
    bar().set_message("tuning matmul tiles for this adapter (once; cached on disk)");
    let results = openkern::autotune::tune_matmul(device)?;
    bar().suspend(|| {
        eprintln!("tuned matmul tile configurations for this adapter (cached):");
        for r in results {
            let tried: Vec<String> = r
                .tried
                .iter()
                .map(|(t, gf)| format!("{t} {gf:.1}"))
                .collect();
            eprintln!(
                "  {} {:?} {:?}: best {}  [{}]",
                r.dtype,
                r.class,
                r.shape,
                r.best,
                tried.join(", ")
            );
        }
    });
    Ok(())
}

/// The rows of this family for the cases `args` selects.
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    tune(device)?;
    let trans_b = MatmulOptions {
        trans_b: true,
        ..Default::default()
    };
    // The weight of the last projection, kept so its gemv (decode) and linear (prefill)
    // rows share one upload: the 70B FFN weight is 940 MB in f32.
    let mut weight: Option<((usize, usize, DType), Tensor)> = None;
    let mut rows = Vec::new();
    let all: Vec<Case> = ["gemv", "linear"]
        .iter()
        .flat_map(|f| args.cases_with_peers(f))
        .collect();
    let models: Vec<String> = super::shapes::models()
        .into_iter()
        .map(|m| m.name)
        .collect();
    // each model class's cases, then those of no model class (the Burn peer's encoder
    // shape)
    let groups = models.iter().map(Some).chain([None]).map(|model| {
        all.iter()
            .filter(|c| match model {
                Some(m) => c.model == *m,
                None => !models.contains(&c.model),
            })
            .cloned()
            .collect::<Vec<_>>()
    });
    for cases in groups {
        // decode first, then prefill, so each weight is uploaded once per dtype
        rows.extend(run_list(cases, |case| {
            let dtype = parse_dtype(&case.dtype);
            let (m, n, k) = (case.shape[0], case.shape[1], case.shape[2]);
            if weight.as_ref().is_none_or(|(key, _)| *key != (n, k, dtype)) {
                weight = None; // free the old one before the new upload
                let w = Tensor::from_f32(device, &data(n * k, 3), &[n, k], dtype)?;
                weight = Some(((n, k, dtype), w));
            }
            let w = &weight.as_ref().expect("just set").1;
            let x = Tensor::from_f32(device, &data(m * k, 4), &[m, k], dtype)?;
            let kernel = ops::matmul::describe(&x, w, &trans_b)?;
            let t = measure(device, || ops::linear(&x, w, None, None).map(drop))?;
            let flops = 2.0 * (m * n * k) as f64;
            let bytes = ((m * k + n * k + m * n) * dtype.size_in_bytes()) as f64;
            let (family, bound) = if case.family == "gemv" {
                ("gemv", Bound::Memory)
            } else {
                ("linear", Bound::Compute)
            };
            let mut row = Row::new(case, family, kernel, &t, flops, bytes, bound);
            super::burn::attach(device, args, case, &mut row, || {
                ops::linear(&x, w, None, None).map(drop)
            })?;
            Ok(vec![row])
        })?);
    }
    drop(weight);
    rows.extend(run_cases(args, "gemm", |case| {
        let dtype = parse_dtype(&case.dtype);
        let n = case.shape[0];
        let a = Tensor::from_f32(device, &data(n * n, 1), &[n, n], dtype)?;
        let b = Tensor::from_f32(device, &data(n * n, 2), &[n, n], dtype)?;
        let kernel = ops::matmul::describe(&a, &b, &MatmulOptions::default())?;
        let t = measure(device, || ops::matmul(&a, &b).map(drop))?;
        let flops = 2.0 * (n as f64).powi(3);
        let bytes = (3 * n * n * dtype.size_in_bytes()) as f64;
        let mut row = Row::new(case, "gemm", kernel, &t, flops, bytes, Bound::Compute);
        super::burn::attach(device, args, case, &mut row, || {
            ops::matmul(&a, &b).map(drop)
        })?;
        Ok(vec![row])
    })?);
    Ok(rows)
}

/// `(M, N, K)` of the epilogue rows: a BERT-style encoder's FFN up and down projections
/// at 72 tokens (4 × 18), and, in the full tier, the FFN up at 512 tokens (hidden 576).
/// The quick tier runs the first.
const EPILOGUE_SHAPES: [(usize, usize, usize); 3] =
    [(72, 1536, 384), (72, 384, 1536), (512, 1536, 576)];

/// The epilogues timed: (bias, activation).
const EPILOGUES: [(bool, Option<Activation>); 7] = [
    (true, None),
    (false, Some(Activation::Gelu)),
    (false, Some(Activation::GeluTanh)),
    (false, Some(Activation::Silu)),
    (false, Some(Activation::Relu)),
    (true, Some(Activation::Gelu)),
    (true, Some(Activation::Relu)),
];

/// `bias+gelu`, `gelu`, `bias`, `none`: an epilogue's name in the rows.
fn epilogue_name(bias: bool, act: Option<Activation>) -> String {
    match (bias, act) {
        (false, None) => "none".into(),
        (true, None) => "bias".into(),
        (false, Some(a)) => a.name().into(),
        (true, Some(a)) => format!("bias+{}", a.name()),
    }
}

/// The case key of an epilogue row (outside the shape list): `op` is
/// `epi.<kernel>.<epilogue>`, or `epi.pass.<epilogue>` for the separate pass.
fn epilogue_case(op: String, (m, n, k): (usize, usize, usize)) -> Case {
    Case {
        family: "linear_epilogue".into(),
        op,
        model: String::new(),
        phase: "prefill".into(),
        shape: vec![m, n, k],
        dtype: "f32".into(),
    }
}

/// A recorder of one op run, for [`interleaved`].
type Op<'a> = &'a mut dyn FnMut() -> openkern::Result<()>;

/// Times `ops` as [`measure`] does (warm-up, then windows of a few tens of milliseconds;
/// 3 samples where a run takes over a quarter second, else 5), but in alternating
/// windows — a, b, c, a, b, c, … — so load that drifts during the run (a software adapter
/// sharing its CPU with other work) falls on all of them alike and their ratio holds.
fn interleaved(device: &Device, ops: &mut [Op<'_>]) -> openkern::Result<Vec<Sampled>> {
    let mut firsts = Vec::new();
    for op in ops.iter_mut() {
        op()?;
        device.sync()?;
        firsts.push(device.time(1, &mut **op)?);
    }
    let want = if firsts.iter().any(|t| t.seconds > 0.25) {
        3
    } else {
        5
    };
    let iters: Vec<usize> = firsts
        .iter()
        .map(|t| (0.03 / t.seconds.max(1e-7)).clamp(1.0, 500.0) as usize)
        .collect();
    let mut samples = vec![Vec::new(); ops.len()];
    for _ in 0..want {
        for ((op, s), &n) in ops.iter_mut().zip(&mut samples).zip(&iters) {
            s.push(device.time(n, &mut **op)?.seconds);
        }
    }
    Ok(samples
        .into_iter()
        .zip(firsts)
        .map(|(s, first)| Sampled::of(s, first.source))
        .collect())
}

/// The `linear_epilogue` rows. For each shape and matmul kernel (tiled and subgroup on a
/// GPU, where the adapter runs them; the CPU backend's own) and each epilogue, three
/// things timed in alternating windows ([`interleaved`]): the plain linear, the linear
/// with the epilogue fused, and the epilogue as a separate pass over the `[M, N]` output
/// (`ops::add` of the bias row, then the activation op). Rows: the plain linear (`none`,
/// from the first epilogue's windows) and each fused epilogue (GFLOP/s against the FMA
/// probe), whose peer is the unfused work of the same windows, plain + separate pass, at
/// the same FLOPs: `1.05x unfused` means fusing is 5% faster than the two, below 1 that it
/// costs more than a pass of its own. The separate passes get rows of their own (GB/s
/// against the copy probe), from the first kernel's windows.
pub fn epilogue_rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    // both 72-token shapes when `--filter` names the family, one in the default run (its
    // 46 rows of 0.2 s matmuls on lavapipe would add a minute to it)
    let named = args.names("epilogue");
    let shapes = match args.tier() {
        Tier::Full => &EPILOGUE_SHAPES[..],
        Tier::Default if named => &EPILOGUE_SHAPES[..2],
        _ => &EPILOGUE_SHAPES[..1],
    };
    let kernels: &[MatmulKernel] = if device.is_cpu() {
        &[MatmulKernel::Auto]
    } else {
        &[MatmulKernel::Tiled, MatmulKernel::Subgroup]
    };
    let mut rows = Vec::new();
    for &(m, n, k) in shapes {
        bar().set_message(format!("linear epilogue {m}x{n}x{k}"));
        let x = Tensor::from_f32(device, &data(m * k, 4), &[m, k], DType::F32)?;
        let w = Tensor::from_f32(device, &data(n * k, 3), &[n, k], DType::F32)?;
        let bias = Tensor::from_f32(device, &data(n, 5), &[n], DType::F32)?;
        let y = Tensor::from_f32(device, &data(m * n, 6), &[m, n], DType::F32)?;
        let flops = 2.0 * (m * n * k) as f64;
        let out_bytes = (m * n * 4) as f64;
        let mut pass_rows = Vec::new();
        for &kernel in kernels {
            let opts = |with_bias: bool, act: Option<Activation>| MatmulOptions {
                trans_b: true,
                bias: with_bias.then(|| bias.clone()),
                activation: act,
                kernel,
                ..Default::default()
            };
            let desc = match ops::matmul::describe(&x, &w, &opts(false, None)) {
                Ok(d) => d,
                Err(e @ openkern::Error::MissingFeature { .. }) => {
                    skip(&format!(
                        "linear epilogue {m}x{n}x{k} {}: {e}",
                        kernel.name()
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let label = if device.is_cpu() {
                "cpu"
            } else {
                kernel.name()
            };
            let first_kernel = pass_rows.is_empty();
            for (i, (with_bias, act)) in EPILOGUES.into_iter().enumerate() {
                let mut plain = || ops::matmul_with(&x, &w, &opts(false, None)).map(drop);
                let mut fused = || ops::matmul_with(&x, &w, &opts(with_bias, act)).map(drop);
                let mut pass = || {
                    let h = if with_bias {
                        ops::add(&y, &bias)?
                    } else {
                        y.clone()
                    };
                    if let Some(a) = act {
                        ops::activation(a, &h)?;
                    }
                    Ok(())
                };
                let t = interleaved(device, &mut [&mut plain, &mut fused, &mut pass])?;
                let (t_plain, t_fused, t_pass) = (&t[0], &t[1], &t[2]);
                let name = epilogue_name(with_bias, act);
                if i == 0 {
                    let case = epilogue_case(format!("epi.{label}.none"), (m, n, k));
                    rows.push(Row::new(
                        &case,
                        "linear_epilogue",
                        desc.clone(),
                        t_plain,
                        flops,
                        0.0,
                        Bound::Compute,
                    ));
                }
                let case = epilogue_case(format!("epi.{label}.{name}"), (m, n, k));
                let mut row = Row::new(
                    &case,
                    "linear_epilogue",
                    format!("{desc} fused"),
                    t_fused,
                    flops,
                    0.0,
                    Bound::Compute,
                );
                row.peer = Some(("unfused", flops / (t_plain.median + t_pass.median)));
                rows.push(row);
                if first_kernel {
                    let passes = usize::from(with_bias) + usize::from(act.is_some());
                    let bytes = passes as f64 * 2.0 * out_bytes;
                    let case = epilogue_case(format!("epi.pass.{name}"), (m, n, k));
                    let mut row = Row::new(
                        &case,
                        "linear_epilogue",
                        String::new(),
                        t_pass,
                        0.0,
                        bytes,
                        Bound::Memory,
                    );
                    row.kernel = kernel_label(device, &name);
                    pass_rows.push(row);
                }
            }
        }
        rows.extend(pass_rows);
    }
    Ok(rows)
}

/// `(model, m, n, k)` of the linears timed beside PyTorch's `F.linear`: the BERT-style
/// encoder's (hidden 384, FFN 1536) at 16 and 72 rows, and the 135M LLaMA's prefill
/// projections at 512 tokens (q/k/v stacked: 576 + 2·192 outputs; gate/up stacked).
const TORCH_LINEARS: &[(&str, usize, usize, usize)] = &[
    ("encoder", 16, 384, 384),
    ("encoder", 16, 1536, 384),
    ("encoder", 16, 384, 1536),
    ("encoder", 72, 384, 384),
    ("encoder", 72, 1536, 384),
    ("encoder", 72, 384, 1536),
    ("135m", 512, 960, 576),
    ("135m", 512, 576, 576),
    ("135m", 512, 3072, 576),
    ("135m", 512, 576, 1536),
];

/// The `linear-torch` rows: `ops::linear` with bias on [`TORCH_LINEARS`], f32 and f16,
/// as GFLOP/s against the FMA probe; on the CPU device PyTorch's `F.linear` (f32) on
/// the same shape is timed in windows alternating with ours (`torch_ops_cpu.py
/// --serve-linear`, on as many threads as the CPU backend uses: `RAYON_NUM_THREADS=1`
/// compares one core with one core) and its ratio printed beside each row (the f16
/// rows against the f32 peer: torch has no fast f16 CPU linear). Before, torch ran all
/// the shapes after all of ours, and an f16 row read 0.83× in one run and 1.24× in the
/// next. Without torch the rows print alone and say so.
pub fn torch_rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    if !device.is_cpu() && !args.full {
        // the comparison is with PyTorch on the CPU; GPUs time these shapes in `--full`
        return Ok(Vec::new());
    }
    let dtypes: &[DType] = if args.quick {
        &[DType::F32]
    } else {
        &[DType::F32, DType::F16]
    };
    // `--filter linear-torch,135m` keeps one model's shapes
    let named: Vec<&str> = args
        .filter
        .as_deref()
        .map(|f| {
            f.split(',')
                .filter(|f| TORCH_LINEARS.iter().any(|c| c.0 == *f))
                .collect()
        })
        .unwrap_or_default();
    let selected: Vec<_> = TORCH_LINEARS
        .iter()
        .copied()
        .filter(|c| named.is_empty() || named.contains(&c.0))
        .collect();
    let mut rows = Vec::new();
    let mut torch = if device.is_cpu() && !selected.is_empty() {
        let threads = device.info().threads.max(1).to_string();
        let args = [
            "--serve-linear".as_ref(),
            "--threads".as_ref(),
            threads.as_ref(),
        ];
        PeerProcess::start("torch_ops_cpu.py", &args, &[])
    } else {
        None
    };
    for &dtype in dtypes {
        for &(model, m, n, k) in &selected {
            let case = super::shapes::Case {
                family: "linear".into(),
                op: "linear.bias".into(),
                model: model.into(),
                phase: "prefill".into(),
                shape: vec![m, n, k],
                dtype: dtype.name().into(),
            };
            bar().set_message(format!("{model} linear.bias [{m},{n},{k}] {dtype}"));
            let w = Tensor::from_f32(device, &data(n * k, 3), &[n, k], dtype)?;
            let b = Tensor::from_f32(device, &data(n, 5), &[n], dtype)?;
            let x = Tensor::from_f32(device, &data(m * k, 4), &[m, k], dtype)?;
            let trans_b = MatmulOptions {
                trans_b: true,
                ..Default::default()
            };
            let kernel = ops::matmul::describe(&x, &w, &trans_b)?;
            let f = || ops::linear(&x, &w, Some(&b), None).map(drop);
            let (t, peer) = match torch.as_mut() {
                Some(torch) => alternating(device, f, 0.02, 0.2, |iters| {
                    torch.seconds(&format!("{m} {n} {k} {iters}"))
                })?,
                None => (measure(device, f)?, None),
            };
            let flops = 2.0 * (m * n * k) as f64;
            let bytes = ((m * k + n * k + m * n + n) * dtype.size_in_bytes()) as f64;
            let mut row = Row::new(&case, "linear", kernel, &t, flops, bytes, Bound::Compute);
            row.peer = peer.map(|s| ("torch", flops / s));
            rows.push(row);
        }
    }
    Ok(rows)
}
