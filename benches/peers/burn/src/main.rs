//! The Burn peer of `openkern bench`: times Burn 0.22.1 on its wgpu backend (CubeCL,
//! WGSL through wgpu, autotune and fusion on: Burn's defaults for that backend) on the
//! cases `openkern bench` feeds it, one per stdin line, and answers each with one line
//! on stdout: the median seconds per call, or `error <why>`.
//!
//! Protocol (see benches/peers/burn/README.md):
//!
//! ```text
//! -> ready burn 0.22.1 wgpu adapters=<names wgpu lists>
//! <- matmul f32 1024 1024 1024          C[M,N] = A[M,K]·B[K,N]      (M N K)
//! <- linear f16 72 384 1536             x[M,K]·W[N,K]ᵀ              (M N K)
//! <- softmax f32 4096 4096              softmax over the last dim   (rows cols)
//! <- attention f32 8 1024 64 causal     q,k,v [1,H,S,D], Burn's fused op (H S D)
//! -> 0.0123
//! ```
//!
//! Timing: inputs are built, then the call is warmed up (the first call runs CubeCL's
//! autotune, which blocks inline on native targets, and compiles the winner) until two
//! consecutive synchronized calls agree within 10 % (at most 8 warm-up calls). Then the
//! call is timed in windows of `n` calls followed by `Device::sync` (wall clock), `n`
//! sized so a window lasts about 30 ms (as `openkern bench` sizes its own); the answer is
//! the median window divided by `n`, over 5 windows (3 when a call takes over 0.25 s).
//! Outputs of a window stay alive until after its sync, so no lazy fusion step can drop
//! work whose result nobody reads.
//!
//! `--once CASE...` runs one case from the command line and prints the warm-up history
//! on stderr (for checking that autotune has settled).

use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Device, Distribution, Tensor};
use std::io::{BufRead, Write};
use std::time::Instant;

/// One case of the protocol, parsed from a line.
#[derive(Debug, PartialEq)]
enum Case {
    /// C[M,N] = A[M,K]·B[K,N].
    Matmul {
        dtype: DType,
        m: usize,
        n: usize,
        k: usize,
    },
    /// x[M,K]·W[N,K]ᵀ, W stored [N,K] and read through a transposed view.
    Linear {
        dtype: DType,
        m: usize,
        n: usize,
        k: usize,
    },
    /// Softmax over the last dimension of [rows, cols].
    Softmax {
        dtype: DType,
        rows: usize,
        cols: usize,
    },
    /// Attention, batch 1, `heads` heads of `seq` × `dim`.
    Attention {
        dtype: DType,
        heads: usize,
        seq: usize,
        dim: usize,
        causal: bool,
    },
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        other => Err(format!("dtype {other:?} (f32 or f16)")),
    }
}

/// Parses one protocol line (`op dtype dims...`).
fn parse(line: &str) -> Result<Case, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (op, rest) = words.split_first().ok_or("empty line")?;
    let (dtype, dims) = rest.split_first().ok_or("no dtype")?;
    let dtype = parse_dtype(dtype)?;
    let causal = dims.last() == Some(&"causal");
    let dims: Vec<usize> = dims
        .iter()
        .filter(|w| **w != "causal")
        .map(|w| w.parse().map_err(|_| format!("dimension {w:?}")))
        .collect::<Result<_, _>>()?;
    match (*op, dims.as_slice()) {
        ("matmul", &[m, n, k]) => Ok(Case::Matmul { dtype, m, n, k }),
        ("linear", &[m, n, k]) => Ok(Case::Linear { dtype, m, n, k }),
        ("softmax", &[rows, cols]) => Ok(Case::Softmax { dtype, rows, cols }),
        ("attention", &[heads, seq, dim]) => Ok(Case::Attention {
            dtype,
            heads,
            seq,
            dim,
            causal,
        }),
        _ => Err(format!("unknown case {line:?}")),
    }
}

fn random<const D: usize>(shape: [usize; D], dtype: DType, device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), (device, dtype))
}

/// A call of the case on prepared inputs, returning its output (kept until the sync).
type Call = Box<dyn FnMut() -> Tensor<4>>;

fn prepare(case: &Case, device: &Device) -> Call {
    match *case {
        Case::Matmul { dtype, m, n, k } => {
            let a = random([m, k], dtype, device);
            let b = random([k, n], dtype, device);
            Box::new(move || a.clone().matmul(b.clone()).unsqueeze::<4>())
        }
        Case::Linear { dtype, m, n, k } => {
            let x = random([m, k], dtype, device);
            let w = random([n, k], dtype, device);
            Box::new(move || x.clone().matmul(w.clone().transpose()).unsqueeze::<4>())
        }
        Case::Softmax { dtype, rows, cols } => {
            let x = random([rows, cols], dtype, device);
            Box::new(move || softmax(x.clone(), 1).unsqueeze::<4>())
        }
        Case::Attention {
            dtype,
            heads,
            seq,
            dim,
            causal,
        } => {
            let q = random([1, heads, seq, dim], dtype, device);
            let k = random([1, heads, seq, dim], dtype, device);
            let v = random([1, heads, seq, dim], dtype, device);
            let options = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: causal,
            };
            Box::new(move || attention(q.clone(), k.clone(), v.clone(), None, None, options))
        }
    }
}

/// Seconds for `n` calls and one sync, the outputs dropped after the sync.
fn window(call: &mut Call, device: &Device, n: usize) -> Result<f64, String> {
    let t0 = Instant::now();
    let outs: Vec<Tensor<4>> = (0..n).map(|_| call()).collect();
    device.sync().map_err(|e| format!("sync: {e:?}"))?;
    let s = t0.elapsed().as_secs_f64();
    drop(outs);
    Ok(s)
}

/// Median seconds per call of `case` after warm-up (see the module doc).
fn seconds(case: &Case, device: &Device, verbose: bool) -> Result<f64, String> {
    let mut call = prepare(case, device);
    device.sync().map_err(|e| format!("sync: {e:?}"))?;
    // warm-up: autotune and compilation in the first call, then until settled
    let mut history = vec![window(&mut call, device, 1)?];
    loop {
        let t = window(&mut call, device, 1)?;
        let prev = *history.last().expect("one at least");
        history.push(t);
        let settled = history.len() >= 3 && (t - prev).abs() <= 0.1 * t.min(prev);
        if settled || history.len() >= 8 {
            break;
        }
    }
    let last = *history.last().expect("one at least");
    if verbose {
        let ms: Vec<String> = history.iter().map(|s| format!("{:.2}", s * 1e3)).collect();
        eprintln!("{case:?}: warm-up calls (ms): {}", ms.join(" "));
    }
    let want = if last > 0.25 { 3 } else { 5 };
    let n = (0.03 / last.max(1e-7)).clamp(1.0, 500.0) as usize;
    let mut samples = Vec::with_capacity(want);
    for _ in 0..want {
        samples.push(window(&mut call, device, n)? / n as f64);
    }
    samples.sort_by(f64::total_cmp);
    if verbose {
        let ms: Vec<String> = samples.iter().map(|s| format!("{:.3}", s * 1e3)).collect();
        eprintln!(
            "{case:?}: {want} windows of {n} calls, ms per call: {}",
            ms.join(" ")
        );
    }
    Ok(samples[samples.len() / 2])
}

/// The adapters wgpu lists here (the peer's device is wgpu's default among them).
fn adapters() -> String {
    use burn::tensor::wgpu::wgpu;
    let instance = wgpu::Instance::default();
    let names: Vec<String> = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    names.join("; ")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device = Device::wgpu(Default::default());
    if args.first().map(String::as_str) == Some("--once") {
        let line = args[1..].join(" ");
        match parse(&line).and_then(|c| seconds(&c, &device, true)) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = writeln!(out, "ready burn 0.22.1 wgpu adapters={}", adapters());
    let _ = out.flush();
    let verbose = std::env::var_os("OPENKERN_BURN_PEER_VERBOSE").is_some();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match parse(&line).and_then(|c| seconds(&c, &device, verbose)) {
            Ok(s) => format!("{s}"),
            Err(e) => format!("error {e}"),
        };
        if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_case_kind() {
        assert_eq!(
            parse("matmul f16 1 2 3"),
            Ok(Case::Matmul {
                dtype: DType::F16,
                m: 1,
                n: 2,
                k: 3
            })
        );
        assert_eq!(
            parse("attention f32 8 1024 64 causal"),
            Ok(Case::Attention {
                dtype: DType::F32,
                heads: 8,
                seq: 1024,
                dim: 64,
                causal: true
            })
        );
        assert!(parse("softmax f64 4 4").is_err());
        assert!(parse("matmul f32 4 4").is_err());
    }
}
