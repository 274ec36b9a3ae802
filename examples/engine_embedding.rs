//! How an inference engine embeds openkern: it owns the wgpu device, hands it to
//! openkern, runs one Llama-style decoder layer on a short prompt, and reads the result
//! once: every kernel of the layer goes to the GPU in a single submission. The same layer
//! then runs on the CPU backend and the two are compared.
//!
//! `cargo run --release --example engine_embedding`
//! (with no GPU adapter the "engine" side is skipped and only the CPU backend runs)

use openkern::ops::{self, RopeAxes, RopeLayout, RopeOptions, SoftmaxOptions};
use openkern::{DType, Device, Tensor};

const VOCAB: usize = 256;
const D_MODEL: usize = 128;
const HEADS: usize = 4;
const HEAD_DIM: usize = D_MODEL / HEADS;
const FFN: usize = 344; // Llama's 8/3·d, not a multiple of any tile size
const EPS: f32 = 1e-5;

/// The layer's weights as host data, so both devices get the same numbers.
struct Weights {
    embedding: Vec<f32>,
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
    ffn_norm: Vec<f32>,
    w_gate: Vec<f32>,
    w_up: Vec<f32>,
    w_down: Vec<f32>,
}

impl Weights {
    fn new() -> Self {
        let mut seed = 0x9e37_79b9_u32;
        // scaled like an initialised layer: weights ~ U(-1, 1)/sqrt(fan_in)
        let mut fill = |len: usize, fan_in: usize| -> Vec<f32> {
            let scale = 1.0 / (fan_in as f32).sqrt();
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale
                })
                .collect()
        };
        Weights {
            embedding: fill(VOCAB * D_MODEL, 1),
            attn_norm: vec![1.0; D_MODEL],
            wq: fill(D_MODEL * D_MODEL, D_MODEL),
            wk: fill(D_MODEL * D_MODEL, D_MODEL),
            wv: fill(D_MODEL * D_MODEL, D_MODEL),
            wo: fill(D_MODEL * D_MODEL, D_MODEL),
            ffn_norm: vec![1.0; D_MODEL],
            w_gate: fill(FFN * D_MODEL, D_MODEL),
            w_up: fill(FFN * D_MODEL, D_MODEL),
            w_down: fill(D_MODEL * FFN, FFN),
        }
    }
}

/// One pre-norm decoder layer (attention with RoPE and a causal mask, then a SwiGLU
/// MLP), weights stored in `dtype`, activations in `dtype`, accumulation in f32.
fn decoder_layer(
    device: &Device,
    w: &Weights,
    tokens: &[u32],
    dtype: DType,
) -> openkern::Result<Tensor> {
    let seq = tokens.len();
    let t = |data: &[f32], shape: &[usize]| Tensor::from_f32(device, data, shape, dtype);
    let ids = Tensor::from_slice(device, tokens, &[seq])?;
    let x = ops::embedding(&ids, &t(&w.embedding, &[VOCAB, D_MODEL])?)?;

    // attention
    let h = ops::rms_norm(&x, &t(&w.attn_norm, &[D_MODEL])?, EPS)?;
    let rope = RopeOptions {
        theta: 10_000.0,
        layout: RopeLayout::Halves,
        axes: RopeAxes::SeqHeadsDim,
        offset: 0,
        rotary_dim: None,
    };
    let heads = |proj: &[f32], rotate: bool| -> openkern::Result<Tensor> {
        let y = ops::linear(&h, &t(proj, &[D_MODEL, D_MODEL])?, None, None)?;
        let y = y.reshape(&[seq, HEADS, HEAD_DIM])?;
        let y = if rotate { ops::rope(&y, &rope)? } else { y };
        ops::permute(&y, &[1, 0, 2]) // [heads, seq, head_dim]
    };
    let (q, k, v) = (
        heads(&w.wq, true)?,
        heads(&w.wk, true)?,
        heads(&w.wv, false)?,
    );
    let scores = ops::matmul_with(
        &q,
        &k,
        &ops::MatmulOptions {
            trans_b: true,
            out_dtype: Some(DType::F32), // keep the logits in f32 for the softmax
            ..Default::default()
        },
    )?;
    let probs = ops::softmax_with(
        &scores,
        &SoftmaxOptions {
            scale: 1.0 / (HEAD_DIM as f32).sqrt(),
            causal: true,
            mask: None,
        },
    )?
    .cast(dtype)?;
    let attn = ops::matmul(&probs, &v)?; // [heads, seq, head_dim]
    let attn = ops::permute(&attn, &[1, 0, 2])?.reshape(&[seq, D_MODEL])?;
    let attn = ops::linear(&attn, &t(&w.wo, &[D_MODEL, D_MODEL])?, None, None)?;

    // MLP: the residual add and the norm are one pass
    let ops::AddNorm { sum: x, normed: h } =
        ops::add_rms_norm(&attn, &x, &t(&w.ffn_norm, &[D_MODEL])?, EPS)?;
    let gate = ops::linear(&h, &t(&w.w_gate, &[FFN, D_MODEL])?, None, None)?;
    let up = ops::linear(&h, &t(&w.w_up, &[FFN, D_MODEL])?, None, None)?;
    let mlp = ops::swiglu(&gate, &up)?;
    let mlp = ops::linear(&mlp, &t(&w.w_down, &[D_MODEL, FFN])?, None, None)?;
    ops::add(&x, &mlp)
}

/// What an engine does at start-up: its own instance, adapter and device, with the
/// adapter's limits and the optional features it wants.
fn engine_device() -> Option<(wgpu::Device, wgpu::Queue)> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .ok()?;
    let wanted = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("engine"),
        required_features: adapter.features() & wanted,
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .ok()
}

fn main() -> openkern::Result<()> {
    let weights = Weights::new();
    let tokens: Vec<u32> = "openkern runs anywhere".bytes().map(u32::from).collect();
    let dtype = DType::F16;

    let cpu = Device::cpu();
    let want = decoder_layer(&cpu, &weights, &tokens, dtype)?.to_f32_vec()?;
    println!(
        "CPU backend: layer output [{}, {D_MODEL}] in {dtype}",
        tokens.len()
    );

    let Some((wgpu_device, queue)) = engine_device() else {
        println!("no GPU adapter: only the CPU backend ran");
        return Ok(());
    };
    let gpu = Device::from_wgpu(wgpu_device, queue);
    let before = gpu.stats();
    let out = decoder_layer(&gpu, &weights, &tokens, dtype)?;
    let recorded = gpu.stats();
    let got = out.to_f32_vec()?; // the one submission
    let after = gpu.stats();
    println!(
        "{} ({}): {} kernels recorded, {} submission(s) before the read, {} for it",
        gpu.info().name,
        gpu.info().backend,
        recorded.passes - before.passes,
        recorded.submissions - before.submissions,
        after.submissions - recorded.submissions,
    );

    let max_diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let max_abs = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    println!("largest |GPU − CPU| = {max_diff:.2e} (values up to {max_abs:.2})");
    // f16 storage rounds every intermediate to 11 bits; both backends accumulate in f32.
    if max_diff > 2e-2 * max_abs.max(1.0) {
        eprintln!("GPU and CPU backends disagree");
        std::process::exit(1);
    }
    Ok(())
}
