//! The matmul families on the model shapes: `linear` (prefill, `x [tokens, in] · W[out,
//! in]ᵀ`, GFLOP/s against the FMA probe), `gemv` (decode, one token: the weight is read
//! once, GB/s against the copy probe) for each projection of a layer (qkv, o, ffn up —
//! gate and up are the same shape — and ffn down), and the square `gemm` sweep. The
//! kernel column is `ops::matmul::describe`. Autotune runs first where the adapter has
//! no cached tile choice. The `linear-torch` family ([`torch_rows`]) times `linear` with
//! bias on the encoder's small-M shapes and the 135M LLaMA's prefill shapes beside
//! PyTorch's `F.linear` in the same run.

use super::memory::data;
use super::{bar, measure, parse_dtype, run_cases, run_list, BenchArgs, Bound, Row};
use openkern::ops::{self, MatmulOptions};
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
    for model in super::shapes::models() {
        // decode first, then prefill, so each weight is uploaded once per dtype
        let cases: Vec<_> = ["gemv", "linear"]
            .iter()
            .flat_map(|f| args.cases(f))
            .filter(|c| c.model == model.name)
            .collect();
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
            Ok(vec![Row::new(
                case, family, kernel, &t, flops, bytes, bound,
            )])
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
        Ok(vec![Row::new(
            case,
            "gemm",
            kernel,
            &t,
            flops,
            bytes,
            Bound::Compute,
        )])
    })?);
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

/// PyTorch's seconds per `F.linear` (f32, with bias) for each `m×n×k` of `cases`, from
/// `benches/peers/torch_ops_cpu.py --linear`, on as many threads as the CPU backend
/// uses (`RAYON_NUM_THREADS=1` compares one core with one core), or None without torch.
fn torch_linear_seconds(cases: &[(usize, usize, usize)], threads: usize) -> Option<Vec<f64>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/peers/torch_ops_cpu.py"
    );
    let spec: Vec<String> = cases
        .iter()
        .map(|(m, n, k)| format!("{m}x{n}x{k}"))
        .collect();
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--linear", &spec.join(",")])
        .args(["--threads", &threads.max(1).to_string()])
        .output()
        .ok()?;
    let seconds: Vec<f64> = String::from_utf8(out.stdout)
        .ok()?
        .split_whitespace()
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    (seconds.len() == cases.len()).then_some(seconds)
}

/// The `linear-torch` rows: `ops::linear` with bias on [`TORCH_LINEARS`], f32 and f16,
/// as GFLOP/s against the FMA probe; on the CPU device PyTorch's `F.linear` (f32) on
/// the same shapes is timed right after ours and its ratio printed beside each row (the
/// f16 rows against the f32 peer: torch has no fast f16 CPU linear). Without torch the
/// rows print alone and say so.
pub fn torch_rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
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
    let mut shapes = Vec::new();
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
            let t = measure(device, || ops::linear(&x, &w, Some(&b), None).map(drop))?;
            let flops = 2.0 * (m * n * k) as f64;
            let bytes = ((m * k + n * k + m * n + n) * dtype.size_in_bytes()) as f64;
            rows.push(Row::new(
                &case,
                "linear",
                kernel,
                &t,
                flops,
                bytes,
                Bound::Compute,
            ));
            shapes.push((m, n, k));
        }
    }
    if device.is_cpu() && !rows.is_empty() {
        bar().set_message("PyTorch F.linear (benches/peers/torch_ops_cpu.py)");
        let per_case = selected.len();
        match torch_linear_seconds(&shapes[..per_case], device.info().threads) {
            Some(seconds) => {
                for (i, r) in rows.iter_mut().enumerate() {
                    r.peer = Some(("torch", r.flops / seconds[i % per_case]));
                }
            }
            None => super::skip("the PyTorch F.linear peer: python3 with torch not found"),
        }
    }
    Ok(rows)
}
