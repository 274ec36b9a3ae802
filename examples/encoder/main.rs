//! A BERT-style sentence encoder built from openkern's public ops: the template a model
//! author copies.
//!
//! 6 layers, hidden 384, 12 heads, FFN 1536, GELU, post-LayerNorm, mean pooling (the
//! shape of all-MiniLM-L6-v2). Random weights are first written to a safetensors file,
//! then loaded from it as a real checkpoint would be (`Tensor::from_bytes`), so the
//! loading code is the code a real model needs. The batch is padded: each sequence has
//! its own length, an additive mask hides the padding from attention, and the pooling
//! averages only the real tokens.
//!
//! ```text
//! cargo run --release --example encoder -- --device cpu --dtype f32 --seq 18
//! cargo run --release --example encoder -- --device gpu --dtype f16 --seq 128 --iters 5
//! ```
//!
//! `--out FILE` also writes the embeddings as raw little-endian f32, to compare runs.
//!
//! Each layer runs one fused QKV projection (the checkpoint's query, key and value
//! weights are stacked at load time), splits its output with `ops::chunk` (one copy pass
//! per part, since the parts interleave along the last dimension), and hands the three
//! parts to the fused `ops::attention` in the `[batch, seq, heads, head_dim]` layout
//! (`AttentionLayout::SeqFirst`), so no permute is needed on either side.
//!
//! `benches/peers/torch_encoder.py` runs the same computation on the same file in
//! PyTorch and prints its embeddings and time per batch, for comparison.

mod model;

use model::{write_checkpoint, Encoder, Res, FFN, HEADS, HIDDEN, LAYERS};
use openkern::{DType, Device, Tensor};
use safetensors::SafeTensors;
use std::time::Instant;

struct Args {
    device: String,
    dtype: DType,
    batch: usize,
    seq: usize,
    iters: usize,
    file: std::path::PathBuf,
    /// Where to write the embeddings as raw little-endian f32 (to compare runs).
    out: Option<std::path::PathBuf>,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        device: "cpu".into(),
        dtype: DType::F32,
        batch: 4,
        seq: 18,
        iters: 10,
        file: std::env::temp_dir().join("openkern_encoder_random.safetensors"),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => a.device = value()?,
            "--dtype" => {
                a.dtype = match value()?.as_str() {
                    "f32" => DType::F32,
                    "f16" => DType::F16,
                    "bf16" => DType::BF16,
                    other => return Err(format!("unknown dtype {other}; f32, f16 or bf16").into()),
                }
            }
            "--batch" => a.batch = value()?.parse()?,
            "--seq" => a.seq = value()?.parse()?,
            "--iters" => a.iters = value()?.parse()?,
            "--file" => a.file = value()?.into(),
            "--out" => a.out = Some(value()?.into()),
            other => {
                return Err(format!(
                    "unknown flag {other}; use --device cpu|gpu --dtype f32|f16|bf16 --batch N --seq L --iters N --file PATH --out EMBEDDINGS.f32"
                )
                .into())
            }
        }
    }
    Ok(a)
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let device = match args.device.as_str() {
        "cpu" => Device::cpu(),
        "gpu" => Device::gpu()?,
        other => return Err(format!("unknown device {other}; cpu or gpu").into()),
    };
    let lengths = write_checkpoint(&args.file, args.batch, args.seq)?;
    let bytes = std::fs::read(&args.file)?;
    let st = SafeTensors::deserialize(&bytes)?;
    let model = Encoder::load(&device, &st, args.dtype)?;
    let ids_view = st.tensor("input_ids")?;
    let ids: Vec<u32> = ids_view
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as u32)
        .collect();
    let ids = Tensor::from_slice(&device, &ids, &[args.batch, args.seq])?;
    println!(
        "encoder: {LAYERS} layers, hidden {HIDDEN}, {HEADS} heads, FFN {FFN}; batch {} x {} tokens (lengths {lengths:?}), {} on {}",
        args.batch,
        args.seq,
        args.dtype,
        device.info().name
    );
    println!("weights: {}", args.file.display());
    let emb = model.forward(&ids, &lengths)?;
    let values = emb.to_vec::<f32>()?;
    if let Some(out) = &args.out {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(out, bytes)?;
    }
    for (b, row) in values.chunks(HIDDEN).enumerate() {
        let head: Vec<String> = row[..6].iter().map(|v| format!("{v:+.5}")).collect();
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        println!(
            "embedding[{b}] = [{}, ...]  |e| = {norm:.5}",
            head.join(", ")
        );
    }
    let start = Instant::now();
    for _ in 0..args.iters {
        let e = model.forward(&ids, &lengths)?;
        device.sync()?;
        drop(e);
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / args.iters.max(1) as f64;
    println!(
        "time per batch: {ms:.2} ms ({} x {} tokens, {}, {} iterations)",
        args.batch, args.seq, args.dtype, args.iters
    );
    Ok(())
}
