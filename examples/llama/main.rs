//! Runs a LLaMA-architecture Hugging Face checkpoint (Llama 2, TinyLlama, SmolLM, ...)
//! with openkern: prefill, then greedy decode with the KV cache on the device, or
//! temperature / top-k sampling.
//!
//! ```text
//! cargo run --release --example llama -- --model DIR --prompt-ids 1,15043,3186 \
//!     [--max-new-tokens 32] [--dtype f32|f16|bf16] [--device cpu|gpu|INDEX] \
//!     [--temperature T [--top-k K] [--seed S]]
//! ```
//!
//! Without `--temperature` (or with 0) decoding is greedy and only each token id is read
//! back; with it, the last position's logits are read back and a token is drawn on the
//! host (seeded, so a run is reproducible).
//!
//! `DIR` holds `config.json` and `model.safetensors` (or shards with
//! `model.safetensors.index.json`), as published. The model code is `model.rs` beside
//! this file: the module an engine copies.
//!
//! With `--features tokenizers`, `--prompt TEXT` encodes the text with the checkpoint's
//! `tokenizer.json` (Hugging Face `tokenizers` crate), and the generated text is printed
//! after the ids.

// the same module tests/llama.rs and the `openkern bench` llama rows include; each uses
// a different part of it
#[allow(dead_code)]
#[path = "model.rs"]
mod model;

use model::{generate_with, Llama, Sampling};
use openkern::{DType, Device, DeviceSelector};
use std::io::Write;
use std::path::PathBuf;

const USAGE: &str = "usage: llama --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N] [--dtype f32|f16|bf16] [--device cpu|gpu|INDEX] [--temperature T [--top-k K] [--seed S]]";

/// The prompt as given on the command line.
enum Prompt {
    Ids(Vec<u32>),
    Text(String),
}

struct Args {
    model: PathBuf,
    prompt: Prompt,
    max_new_tokens: usize,
    dtype: DType,
    device: String,
    sampling: Sampling,
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut prompt = None;
    let mut max_new_tokens = 32;
    let mut dtype = DType::F32;
    let mut device = "gpu".to_string();
    let (mut temperature, mut top_k, mut seed) = (0.0f32, 0usize, 0u64);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--prompt-ids" => {
                prompt = Some(Prompt::Ids(
                    value()?
                        .split(',')
                        .map(|s| {
                            s.trim()
                                .parse::<u32>()
                                .map_err(|_| format!("--prompt-ids: {s:?} is not a token id"))
                        })
                        .collect::<Result<Vec<u32>, String>>()?,
                ))
            }
            "--prompt" => prompt = Some(Prompt::Text(value()?)),
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
            "--temperature" => {
                temperature = value()?
                    .parse()
                    .ok()
                    .filter(|t: &f32| t.is_finite() && *t >= 0.0)
                    .ok_or("--temperature takes a number ≥ 0 (0: greedy)")?
            }
            "--top-k" => {
                top_k = value()?
                    .parse()
                    .map_err(|_| "--top-k takes a count (0: all tokens)".to_string())?
            }
            "--seed" => {
                seed = value()?
                    .parse()
                    .map_err(|_| "--seed takes an unsigned integer".to_string())?
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}; {USAGE}")),
        }
    }
    if temperature == 0.0 && (top_k != 0 || seed != 0) {
        return Err("--top-k and --seed apply to sampling: add --temperature T (> 0)".into());
    }
    Ok(Args {
        model: model.ok_or(format!("--model is required; {USAGE}"))?,
        prompt: prompt.ok_or(format!("--prompt or --prompt-ids is required; {USAGE}"))?,
        max_new_tokens,
        dtype,
        device,
        sampling: if temperature > 0.0 {
            Sampling::Sample {
                temperature,
                top_k,
                seed,
            }
        } else {
            Sampling::Greedy
        },
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

/// The checkpoint's tokenizer.json, when this build has the `tokenizers` feature and the
/// file exists.
#[cfg(feature = "tokenizers")]
struct Tokenizer(tokenizers::Tokenizer);
#[cfg(not(feature = "tokenizers"))]
struct Tokenizer;

impl Tokenizer {
    fn open(dir: &std::path::Path) -> Result<Option<Tokenizer>, Box<dyn std::error::Error>> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Ok(None);
        }
        #[cfg(feature = "tokenizers")]
        return Ok(Some(Tokenizer(
            tokenizers::Tokenizer::from_file(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        )));
        #[cfg(not(feature = "tokenizers"))]
        Ok(None)
    }

    #[cfg(feature = "tokenizers")]
    fn encode(&self, text: &str) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
        Ok(self
            .0
            .encode(text, true)
            .map_err(|e| format!("tokenizer.json could not encode the prompt: {e}"))?
            .get_ids()
            .to_vec())
    }

    #[cfg(feature = "tokenizers")]
    fn decode(&self, ids: &[u32]) -> Option<String> {
        self.0.decode(ids, true).ok()
    }
}

/// The prompt's token ids: as given, or the text through tokenizer.json.
fn prompt_ids(
    prompt: &Prompt,
    tokenizer: Option<&Tokenizer>,
    dir: &std::path::Path,
) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    match (prompt, tokenizer) {
        (Prompt::Ids(ids), _) => Ok(ids.clone()),
        #[cfg(feature = "tokenizers")]
        (Prompt::Text(text), Some(t)) => t.encode(text),
        (Prompt::Text(text), _) => Err(if cfg!(feature = "tokenizers") {
            format!(
                "--prompt {text:?} needs {}; pass token ids with --prompt-ids",
                dir.join("tokenizer.json").display()
            )
        } else {
            format!("--prompt {text:?} needs the tokenizer, which this build leaves out: rebuild with `--features tokenizers`, or pass token ids with --prompt-ids")
        }
        .into()),
    }
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
    let tokenizer = Tokenizer::open(&args.model)?;
    let ids = prompt_ids(&args.prompt, tokenizer.as_ref(), &args.model)?;
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
    let g = generate_with(&model, &ids, args.max_new_tokens, args.sampling, |id| {
        eprint!("{id} ");
        let _ = std::io::stderr().flush();
    })?;
    eprintln!();
    let ids: Vec<String> = g.ids.iter().map(u32::to_string).collect();
    println!("ids: {}", ids.join(","));
    #[cfg(feature = "tokenizers")]
    if let Some(text) = tokenizer.as_ref().and_then(|t| t.decode(&g.ids)) {
        println!("text: {text}");
    }
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
