//! Runs a LLaMA-architecture Hugging Face checkpoint (Llama 2, TinyLlama, SmolLM, ...)
//! with openkern: prefill, then greedy decode with the KV cache on the device.
//!
//! ```text
//! cargo run --release --example llama -- --model DIR --prompt-ids 1,15043,3186 \
//!     [--max-new-tokens 32] [--dtype f32|f16|bf16] [--device cpu|gpu|INDEX]
//! ```
//!
//! `DIR` holds `config.json` and `model.safetensors` (or shards with
//! `model.safetensors.index.json`), as published. The model code is `model.rs` beside
//! this file: the module an engine copies.

// the same module tests/llama.rs and the `openkern bench` llama rows include; each uses
// a different part of it
#[allow(dead_code)]
#[path = "model.rs"]
mod model;

use model::{generate, Llama};
use openkern::{DType, Device, DeviceSelector};
use std::io::Write;
use std::path::PathBuf;

const USAGE: &str = "usage: llama --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N] [--dtype f32|f16|bf16] [--device cpu|gpu|INDEX]";

struct Args {
    model: PathBuf,
    prompt_ids: Vec<u32>,
    max_new_tokens: usize,
    dtype: DType,
    device: String,
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut prompt_ids = None;
    let mut max_new_tokens = 32;
    let mut dtype = DType::F32;
    let mut device = "gpu".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--prompt-ids" => {
                prompt_ids = Some(
                    value()?
                        .split(',')
                        .map(|s| {
                            s.trim()
                                .parse::<u32>()
                                .map_err(|_| format!("--prompt-ids: {s:?} is not a token id"))
                        })
                        .collect::<Result<Vec<u32>, String>>()?,
                )
            }
            "--prompt" => {
                let _ = value()?;
                return Err("--prompt TEXT needs a tokenizer, which this build does not include (the `tokenizers` crate is not a dependency yet); pass the token ids with --prompt-ids".into());
            }
            "--max-new-tokens" => {
                max_new_tokens = value()?
                    .parse()
                    .map_err(|_| "--max-new-tokens takes a number".to_string())?
            }
            "--dtype" => {
                dtype = match value()?.as_str() {
                    "f32" => DType::F32,
                    "f16" => DType::F16,
                    "bf16" => DType::BF16,
                    other => return Err(format!("--dtype {other}: use f32, f16 or bf16")),
                }
            }
            "--device" => device = value()?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}; {USAGE}")),
        }
    }
    Ok(Args {
        model: model.ok_or(format!("--model is required; {USAGE}"))?,
        prompt_ids: prompt_ids.ok_or(format!("--prompt-ids is required; {USAGE}"))?,
        max_new_tokens,
        dtype,
        device,
    })
}

fn open_device(name: &str) -> Result<Device, Box<dyn std::error::Error>> {
    Ok(match name {
        "cpu" => Device::cpu(),
        "gpu" => Device::gpu()?,
        index => Device::open(DeviceSelector::Adapter(index.parse().map_err(|_| {
            format!("--device {index}: use cpu, gpu or an adapter index from `openkern info`")
        })?))?,
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let device = open_device(&args.device)?;
    let load_start = std::time::Instant::now();
    let model = Llama::load(&args.model, &device, args.dtype)?;
    device.sync()?;
    let c = &model.config;
    eprintln!(
        "loaded {} layers, hidden {}, {} heads / {} kv heads, vocab {} as {} in {:.2} s",
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.vocab_size,
        args.dtype,
        load_start.elapsed().as_secs_f64()
    );
    let g = generate(&model, &args.prompt_ids, args.max_new_tokens, |id| {
        eprint!("{id} ");
        let _ = std::io::stderr().flush();
    })?;
    eprintln!();
    let ids: Vec<String> = g.ids.iter().map(u32::to_string).collect();
    println!("ids: {}", ids.join(","));
    println!(
        "device: {} ({}, {:?})",
        device.info().name,
        device.info().backend,
        device.info().device_type
    );
    println!(
        "prefill: {} tokens in {:.3} s = {:.1} tokens/s",
        g.prompt_tokens,
        g.prefill_s,
        g.prompt_tokens as f64 / g.prefill_s
    );
    if g.decoded > 0 {
        println!(
            "decode: {} tokens in {:.3} s = {:.1} tokens/s",
            g.decoded,
            g.decode_s,
            g.decoded as f64 / g.decode_s
        );
        if device.is_cpu() {
            println!(
                "submissions per decoded token: n/a (the CPU backend runs ops as they are called)"
            );
        } else {
            println!(
                "submissions per decoded token: {:.2}",
                g.submissions as f64 / g.decoded as f64
            );
        }
    }
    Ok(())
}
