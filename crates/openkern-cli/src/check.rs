//! `openkern check`: each op family once on every adapter (or the chosen device) against
//! the CPU device, on odd shapes, so a user can see their adapter computes the right
//! numbers: one pass/fail table per adapter with the worst error per op, then a summary.

use openkern::{ops, DType, Device, DeviceSelector, Tensor};
use std::cell::RefCell;

thread_local! {
    /// (op, worst error, passed) of the adapter being checked, for its summary.
    static RESULTS: RefCell<Vec<(String, f32, bool)>> = const { RefCell::new(Vec::new()) };
}

fn record(name: &str, worst: f32, ok: bool) {
    RESULTS.with(|r| r.borrow_mut().push((name.to_string(), worst, ok)));
}

/// Checks every adapter (`default`) or the one `selector` names, and prints a summary
/// table per device; fails when any op failed anywhere.
pub fn run_all(selector: &str) -> openkern::Result<()> {
    let devices: Vec<(String, openkern::Result<Device>)> = if selector == "default" {
        let adapters = Device::adapters();
        if adapters.is_empty() {
            println!("no wgpu adapter found; checking the CPU device against itself only");
            vec![("cpu".into(), Ok(Device::cpu()))]
        } else {
            adapters
                .iter()
                .map(|a| {
                    (
                        format!("[{}] {} ({})", a.index, a.name, a.backend),
                        Device::open(DeviceSelector::Adapter(a.index)),
                    )
                })
                .collect()
        }
    } else {
        vec![(selector.to_string(), crate::open(selector))]
    };
    let mut summary = Vec::new();
    for (label, device) in devices {
        let device = match device {
            Ok(d) => d,
            Err(e) => {
                println!("{label}: could not open: {e}\n");
                summary.push((label, 0, 1, Vec::new()));
                continue;
            }
        };
        RESULTS.with(|r| r.borrow_mut().clear());
        let outcome = run(&device);
        let results = RESULTS.with(|r| r.take());
        let failed: Vec<String> = results
            .iter()
            .filter(|(_, _, ok)| !ok)
            .map(|(n, _, _)| n.clone())
            .collect();
        let errors = match outcome {
            Err(openkern::Error::Gpu { .. }) | Ok(()) => 0,
            Err(e) => {
                println!("error while checking: {e}");
                1
            }
        };
        summary.push((
            format!("{} ({})", device.info().name, device.info().backend),
            results.len(),
            failed.len() + errors,
            failed,
        ));
        println!();
    }
    println!("{:<48} {:>6} {:>7}  result", "device", "checks", "failed");
    let mut all = true;
    for (label, n, bad, failed) in &summary {
        all &= *bad == 0;
        println!(
            "{label:<48} {n:>6} {bad:>7}  {}",
            if *bad == 0 {
                "PASS".to_string()
            } else {
                format!("FAIL {}", failed.join(", "))
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

fn compare(name: &str, dtype: DType, got: &Tensor, want: &Tensor) -> openkern::Result<bool> {
    compare_tol(name, dtype, got, want, 4.0 * dtype.epsilon() as f32)
}

/// [`compare`] with an explicit tolerance (sums, whose order differs between devices).
fn compare_tol(
    name: &str,
    dtype: DType,
    got: &Tensor,
    want: &Tensor,
    tol: f32,
) -> openkern::Result<bool> {
    let g = got.to_f32_vec()?;
    let w = want.to_f32_vec()?;
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0f32, f32::max);
    let ok = g.len() == w.len() && worst <= tol;
    record(&format!("{name} {}", dtype.name()), worst, ok);
    println!(
        "{:<28} {:<5} {:>10.2e}  {}",
        name,
        dtype.name(),
        worst,
        if ok { "ok" } else { "FAIL" }
    );
    Ok(ok)
}

/// Checks one device against the CPU device, printing one line per op and dtype.
pub fn run(device: &Device) -> openkern::Result<()> {
    let cpu = Device::cpu();
    println!(
        "checking {} ({}) against the CPU device\n",
        device.info().name,
        device.info().backend
    );
    println!("{:<28} {:<5} {:>10}  result", "op", "dtype", "worst err");
    let mut all = true;
    for dtype in DType::ALL {
        let (a, b) = (pseudo_random(3 * 17 * 65, 1), pseudo_random(17 * 65, 2));
        let on = |d: &Device, v: &[f32], s: &[usize]| Tensor::from_f32(d, v, s, dtype);
        let (ga, gb) = (on(device, &a, &[3, 17, 65])?, on(device, &b, &[17, 65])?);
        let (ca, cb) = (on(&cpu, &a, &[3, 17, 65])?, on(&cpu, &b, &[17, 65])?);
        all &= compare(
            "add (broadcast 3x17x65)",
            dtype,
            &ops::add(&ga, &gb)?,
            &ops::add(&ca, &cb)?,
        )?;
        all &= compare(
            "mul (broadcast 3x17x65)",
            dtype,
            &ops::mul(&ga, &gb)?,
            &ops::mul(&ca, &cb)?,
        )?;
        all &= compare(
            "cast f32 roundtrip",
            dtype,
            &ga.cast(DType::F32)?.cast(dtype)?,
            &ca,
        )?;
        all &= check_inference_ops(device, &cpu, dtype)?;
    }
    if all {
        println!("\nall checks passed");
        Ok(())
    } else {
        Err(openkern::Error::Gpu {
            device: device.info().name.clone(),
            message: "some checks failed (see table)".into(),
        })
    }
}

/// The inference op set (softmax, norms, activations, RoPE, gather, reductions, layout),
/// each once on odd shapes against the CPU device.
fn check_inference_ops(device: &Device, cpu: &Device, dtype: DType) -> openkern::Result<bool> {
    let (rows, n) = (7, 257);
    let x = pseudo_random(rows * n, 3);
    let r = pseudo_random(rows * n, 4);
    let w = pseudo_random(n, 5);
    let on = |d: &Device, v: &[f32], s: &[usize]| Tensor::from_f32(d, v, s, dtype);
    let (gx, cx) = (on(device, &x, &[rows, n])?, on(cpu, &x, &[rows, n])?);
    let (gr, cr) = (on(device, &r, &[rows, n])?, on(cpu, &r, &[rows, n])?);
    let (gw, cw) = (on(device, &w, &[n])?, on(cpu, &w, &[n])?);
    let mut all = true;
    type Unary = fn(&Tensor) -> openkern::Result<Tensor>;
    let unary: [(&str, Unary); 7] = [
        ("softmax (7x257)", ops::softmax),
        ("log_softmax (7x257)", ops::log_softmax),
        ("gelu (7x257)", ops::gelu),
        ("gelu_tanh (7x257)", ops::gelu_tanh),
        ("silu (7x257)", ops::silu),
        ("max (7x257)", ops::max),
        ("transpose (7x257)", |t| ops::transpose(t, 0, 1)),
    ];
    for (name, f) in unary {
        all &= compare(name, dtype, &f(&gx)?, &f(&cx)?)?;
    }
    // 257 terms summed in another order: a few ulps of the sum
    let tol = 4.0 * dtype.epsilon() as f32 + 2e-6;
    all &= compare_tol("sum (7x257)", dtype, &ops::sum(&gx)?, &ops::sum(&cx)?, tol)?;
    let causal = ops::SoftmaxOptions {
        scale: 0.5,
        causal: true,
        mask: None,
    };
    all &= compare(
        "softmax causal (7x257)",
        dtype,
        &ops::softmax_with(&gx, &causal)?,
        &ops::softmax_with(&cx, &causal)?,
    )?;
    all &= compare(
        "rms_norm (7x257)",
        dtype,
        &ops::rms_norm(&gx, &gw, 1e-6)?,
        &ops::rms_norm(&cx, &cw, 1e-6)?,
    )?;
    all &= compare(
        "layer_norm (7x257)",
        dtype,
        &ops::layer_norm(&gx, &gw, &gw, 1e-5)?,
        &ops::layer_norm(&cx, &cw, &cw, 1e-5)?,
    )?;
    all &= compare(
        "add_rms_norm (7x257)",
        dtype,
        &ops::add_rms_norm(&gx, &gr, &gw, 1e-6)?.normed,
        &ops::add_rms_norm(&cx, &cr, &cw, 1e-6)?.normed,
    )?;
    all &= compare(
        "swiglu (7x257)",
        dtype,
        &ops::swiglu(&gx, &gr)?,
        &ops::swiglu(&cx, &cr)?,
    )?;
    all &= compare(
        "concat (7x257 + 7x257)",
        dtype,
        &ops::concat(&[&gx, &gr], 1)?,
        &ops::concat(&[&cx, &cr], 1)?,
    )?;
    let q = pseudo_random(3 * 4 * 64, 6);
    let o = ops::RopeOptions {
        offset: 17,
        ..Default::default()
    };
    all &= compare(
        "rope (3x4x64, +17)",
        dtype,
        &ops::rope(&on(device, &q, &[3, 4, 64])?, &o)?,
        &ops::rope(&on(cpu, &q, &[3, 4, 64])?, &o)?,
    )?;
    let ids = [3u32, 0, 6, 6, 1];
    all &= compare(
        "embedding (5 of 7x257)",
        dtype,
        &ops::embedding(&Tensor::from_slice(device, &ids, &[5])?, &gx)?,
        &ops::embedding(&Tensor::from_slice(cpu, &ids, &[5])?, &cx)?,
    )?;
    let (ga, ca) = (ops::argmax(&gx)?, ops::argmax(&cx)?);
    let ok = ga.to_vec::<u32>()? == ca.to_vec::<u32>()?;
    println!(
        "{:<28} {:<5} {:>10}  {}",
        "argmax (7x257)",
        dtype.name(),
        "exact",
        if ok { "ok" } else { "FAIL" }
    );
    record(&format!("argmax {}", dtype.name()), 0.0, ok);
    all &= ok;
    all &= check_matmul_and_layout(device, cpu, dtype)?;
    Ok(all)
}

/// matmul (plain, batched, transposed, the linear layer with bias and activation), the
/// elementwise ops not above, mean, and permute, on odd shapes.
fn check_matmul_and_layout(device: &Device, cpu: &Device, dtype: DType) -> openkern::Result<bool> {
    let on = |d: &Device, v: &[f32], s: &[usize]| Tensor::from_f32(d, v, s, dtype);
    let (m, k, n) = (17, 65, 33);
    let a = pseudo_random(3 * m * k, 7);
    let b = pseudo_random(k * n, 8);
    let bias = pseudo_random(n, 9);
    let (ga, ca) = (on(device, &a, &[3, m, k])?, on(cpu, &a, &[3, m, k])?);
    let (gb, cb) = (on(device, &b, &[k, n])?, on(cpu, &b, &[k, n])?);
    let (gw, cw) = (on(device, &b, &[n, k])?, on(cpu, &b, &[n, k])?);
    let (gbias, cbias) = (on(device, &bias, &[n])?, on(cpu, &bias, &[n])?);
    // k products summed in another order (and f16 operands rounded once per product)
    let tol = 8.0 * dtype.epsilon() as f32 + 1e-5;
    let mut all = true;
    all &= compare_tol(
        "matmul batched (3x17x65·65x33)",
        dtype,
        &ops::matmul(&ga, &gb)?,
        &ops::matmul(&ca, &cb)?,
        tol,
    )?;
    let act = Some(ops::Activation::Silu);
    all &= compare_tol(
        "linear +bias silu (51x65·33x65ᵀ)",
        dtype,
        &ops::linear(&ga, &gw, Some(&gbias), act)?,
        &ops::linear(&ca, &cw, Some(&cbias), act)?,
        tol,
    )?;
    let x1 = pseudo_random(k, 10);
    all &= compare_tol(
        "gemv (1x65·33x65ᵀ)",
        dtype,
        &ops::linear(&on(device, &x1, &[1, k])?, &gw, None, None)?,
        &ops::linear(&on(cpu, &x1, &[1, k])?, &cw, None, None)?,
        tol,
    )?;
    all &= compare(
        "sub (broadcast 3x17x65 - 65)",
        dtype,
        &ops::sub(&ga, &on(device, &a[..k], &[k])?)?,
        &ops::sub(&ca, &on(cpu, &a[..k], &[k])?)?,
    )?;
    all &= compare(
        "div_scalar (3x17x65)",
        dtype,
        &ops::div_scalar(&ga, 3.0)?,
        &ops::div_scalar(&ca, 3.0)?,
    )?;
    all &= compare_tol(
        "mean (3x17x65)",
        dtype,
        &ops::mean(&ga)?,
        &ops::mean(&ca)?,
        4.0 * dtype.epsilon() as f32 + 2e-6,
    )?;
    all &= compare(
        "permute (3x17x65 [2,0,1])",
        dtype,
        &ops::permute(&ga, &[2, 0, 1])?,
        &ops::permute(&ca, &[2, 0, 1])?,
    )?;
    Ok(all)
}
