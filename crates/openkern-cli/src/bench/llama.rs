//! End-to-end rows: the LLaMA decoder of `examples/llama/model.rs` (the same module the
//! example runs) on a ~135M-parameter LLaMA shape (SmolLM-135M: hidden 576, 30 layers,
//! 9 heads over 3 kv heads, FFN 1536, vocab 49152) with random weights. Two rows per
//! dtype: prefill (the prompt through every layer and the greedy id of its last
//! position, seconds per prompt) and decode (one token against the prompt's KV cache,
//! seconds per token), both as FLOP/s of the weights' matmuls (2 FLOPs per weight per
//! token; the LM head once per prefill) against the FMA probe, with tokens/s in the
//! kernel column. On the CPU device, f32, PyTorch running the same model in plain torch
//! ops with a preallocated KV cache (benches/peers/torch_llama.py) is timed right after,
//! and the ratio is printed beside the row.
//!
//! The whole 30-layer model with a 512-token prompt runs only with `--full` or when
//! `--filter` names `llama` (without `--quick`); otherwise 4 of the 30 layers and a
//! 64-token prompt, f32, so the default run stays short (`--quick --filter llama` runs
//! just that).

#[allow(dead_code)]
#[path = "../../../../examples/llama/model.rs"]
mod model;

use super::memory::{data, or_skip};
use super::{BenchArgs, Bound, Row};
use model::{Config, Llama};
use openkern::{DType, Device, DeviceType, Tensor, TimingSource};
use shapes_of::*;

/// The 135M shape.
mod shapes_of {
    pub const HIDDEN: usize = 576;
    pub const LAYERS: usize = 30;
    pub const HEADS: usize = 9;
    pub const KV_HEADS: usize = 3;
    pub const FFN: usize = 1536;
    pub const VOCAB: usize = 49152;
}

/// The config of the 135M shape with `layers` decoder layers.
pub fn config(layers: usize, max_positions: usize) -> Config {
    Config {
        hidden_size: HIDDEN,
        intermediate_size: FFN,
        num_hidden_layers: layers,
        num_attention_heads: HEADS,
        num_key_value_heads: KV_HEADS,
        head_dim: HIDDEN / HEADS,
        rms_norm_eps: 1e-5,
        rope_theta: 100_000.0,
        tie_word_embeddings: true,
        vocab_size: VOCAB,
        max_position_embeddings: max_positions,
        eos_token_ids: Vec::new(),
    }
}

/// FLOPs of one token through the weights: 2 per weight of every layer's projections.
fn layer_flops_per_token(c: &Config) -> f64 {
    let h = c.hidden_size;
    let q = c.num_attention_heads * c.head_dim;
    let kv = c.num_key_value_heads * c.head_dim;
    let per_layer = h * q * 2 + h * kv * 2 + 3 * h * c.intermediate_size;
    2.0 * (per_layer * c.num_hidden_layers) as f64
}

/// A model of the 135M shape with random weights in `dtype` (norm weights f32).
fn random_model(device: &Device, c: Config, dtype: DType) -> model::Result<Llama> {
    let mut seed = 0;
    Llama::from_fn(c, device, dtype, |name, shape, dtype| {
        seed += 1;
        let n: usize = shape.iter().product();
        let scale = if shape.len() == 1 {
            0.5
        } else if name.contains("embed") {
            0.05
        } else {
            0.5 / (shape[1] as f32).sqrt()
        };
        let values: Vec<f32> = data(n, seed).iter().map(|v| v * scale).collect();
        Ok(Tensor::from_f32(device, &values, shape, dtype)?)
    })
}

fn ids(n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 7919 + 13) % VOCAB as u32)
        .collect()
}

/// Seconds of one prefill of `prompt` tokens (fresh cache, up to the id read back):
/// median of 3 after a warm-up, and min / max.
fn time_prefill(model: &Llama, prompt: usize) -> model::Result<[f64; 3]> {
    let ids = ids(prompt);
    let mut samples = Vec::new();
    for i in 0..4 {
        let mut seq = model.new_sequence(prompt)?;
        let t = model.prompt_ids(&seq, &ids)?;
        model.device().sync()?;
        let start = std::time::Instant::now();
        let id = model.next_token(&mut seq, &t)?;
        id.to_vec::<u32>()?;
        if i > 0 {
            samples.push(start.elapsed().as_secs_f64());
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok([samples[1], samples[0], samples[2]])
}

/// Seconds per decoded token after a `context`-token prompt: `steps` greedy steps (each
/// reading its id back, as a generation loop does) in 3 windows; the median window's
/// per-token time, and min / max. Also returns submissions per token.
fn time_decode(model: &Llama, context: usize, steps: usize) -> model::Result<([f64; 3], f64)> {
    let mut seq = model.new_sequence(context + steps + 2)?;
    let t = model.prompt_ids(&seq, &ids(context))?;
    let mut next = model.next_token(&mut seq, &t)?;
    next.to_vec::<u32>()?;
    // one untimed step: the decode kernels' pipelines
    next = model.next_token(&mut seq, &next)?;
    next.to_vec::<u32>()?;
    let device = model.device();
    let submissions = device.stats().submissions;
    let window = (steps / 3).max(1);
    let mut samples = Vec::new();
    for _ in 0..3 {
        let start = std::time::Instant::now();
        for _ in 0..window {
            next = model.next_token(&mut seq, &next)?;
            next.to_vec::<u32>()?;
        }
        samples.push(start.elapsed().as_secs_f64() / window as f64);
    }
    let per_token = (device.stats().submissions - submissions) as f64 / (3 * window) as f64;
    samples.sort_by(f64::total_cmp);
    Ok(([samples[1], samples[0], samples[2]], per_token))
}

/// PyTorch's (prefill seconds, decode seconds per token) for the same model on this CPU,
/// or None without torch.
fn torch_seconds(layers: usize, prompt: usize, steps: usize) -> Option<(f64, f64)> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/peers/torch_llama.py"
    );
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg("--one")
        .args([layers, prompt, steps].map(|x| x.to_string()))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some((it.next()??, it.next()??))
}

/// The case key shared with the peer's file: shape `[layers, prompt tokens, decode steps]`.
fn case(
    phase: &str,
    layers: usize,
    prompt: usize,
    steps: usize,
    dtype: DType,
) -> super::shapes::Case {
    super::shapes::Case {
        family: "llama".into(),
        op: format!("llama.{phase}"),
        model: "135m".into(),
        phase: phase.into(),
        shape: vec![layers, prompt, steps],
        dtype: dtype.name().into(),
    }
}

/// The llama rows: prefill and decode per dtype (see the module docs for the tiers).
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let big = args.full || args.names("llama");
    let (layers, prompt, steps) = if big { (LAYERS, 512, 30) } else { (4, 64, 12) };
    let cpu = device.info().device_type == DeviceType::Cpu;
    let dtypes: &[DType] = if big {
        &[DType::F32, DType::F16]
    } else {
        &[DType::F32]
    };
    let mut out = Vec::new();
    for &dtype in dtypes {
        let label = format!("llama 135m {layers}L {dtype}");
        out.extend(or_skip(
            &label,
            (|| {
                let c = config(layers, prompt + steps + 8);
                let per_token = layer_flops_per_token(&c);
                let lm_head = 2.0 * (HIDDEN * VOCAB) as f64;
                let model = random_model(device, c, dtype).map_err(openkern_error)?;
                let prefill = time_prefill(&model, prompt).map_err(openkern_error)?;
                let (decode, subs) = time_decode(&model, prompt, steps).map_err(openkern_error)?;
                drop(model);
                device.trim_pool();
                let peer = if cpu && dtype == DType::F32 {
                    torch_seconds(layers, prompt, steps)
                } else {
                    None
                };
                let prefill_flops = per_token * prompt as f64 + lm_head;
                let decode_flops = per_token + lm_head;
                let row = |phase: &str,
                           t: [f64; 3],
                           flops: f64,
                           tokens: usize,
                           kernel: String,
                           peer_s: Option<f64>| Row {
                    family: "llama",
                    case: format!("{phase} {layers}L prompt {prompt}"),
                    dtype: dtype.name(),
                    seconds: t[0],
                    min_seconds: t[1],
                    max_seconds: t[2],
                    samples: 3,
                    work: flops,
                    flops,
                    bound: Bound::Compute,
                    source: TimingSource::WallClock,
                    peer: peer_s.map(|s| ("torch", flops / s)),
                    spec: Some(case(
                        phase,
                        layers,
                        prompt,
                        if phase == "decode" { steps } else { 0 },
                        dtype,
                    )),
                    kernel: format!("{:.1} tok/s{kernel}", tokens as f64 / t[0]),
                    ..Default::default()
                };
                let subs = if cpu {
                    String::new()
                } else {
                    format!(", {subs:.2} subm/tok")
                };
                Ok(vec![
                    row(
                        "prefill",
                        prefill,
                        prefill_flops,
                        prompt,
                        String::new(),
                        peer.map(|p| p.0),
                    ),
                    row("decode", decode, decode_flops, 1, subs, peer.map(|p| p.1)),
                ])
            })(),
        )?);
    }
    Ok(out)
}

/// The model's error as openkern's (the bench's error type), keeping openkern errors
/// (e.g. `TooLarge`, which the caller turns into a skip) as they are.
fn openkern_error(e: model::ModelError) -> openkern::Error {
    match e {
        model::ModelError::Openkern(e) => e,
        other => openkern::Error::Internal {
            message: other.to_string(),
        },
    }
}
