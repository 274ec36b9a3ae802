//! The matmul families on the model shapes: `linear` (prefill, `x [tokens, in] · W[out,
//! in]ᵀ`, GFLOP/s against the FMA probe), `gemv` (decode, one token: the weight is read
//! once, GB/s against the copy probe) for each projection of a layer (qkv, o, ffn up —
//! gate and up are the same shape — and ffn down), and the square `gemm` sweep. The
//! kernel column is `ops::matmul::describe`. Autotune runs first where the adapter has
//! no cached tile choice.

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
