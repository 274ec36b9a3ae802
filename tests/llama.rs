//! The LLaMA example's model (examples/llama/model.rs) on a tiny random checkpoint written
//! in the Hugging Face format (config.json + safetensors): logits against a plain f64
//! forward written here, GPU against CPU, decoding through the KV cache against re-running
//! the whole prefix, f16/bf16 checkpoints with a cast on load, sharded checkpoints, and the
//! errors a bad checkpoint gets.

mod common;
use common::*;

#[allow(dead_code)]
#[path = "../examples/llama/model.rs"]
mod model;

use model::{
    generate, generate_with, sample_token, Checkpoint, Config, Llama, ModelError, Sampling,
    TokenRng,
};
use openkern::{DType, Device, Tensor};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LAYERS: usize = 2;
const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const FFN: usize = 128;
const VOCAB: usize = 97;
const MAX_POS: usize = 48;
const THETA: f64 = 5000.0;
const EPS: f64 = 1e-5;

/// A prompt that is not a tile multiple.
const PROMPT: [u32; 7] = [3, 96, 14, 15, 92, 65, 35];

/// The checkpoint's tensors as host f32 data, by Hugging Face name.
type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn config_json(tied: bool) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": EPS,
        "rope_theta": THETA,
        "tie_word_embeddings": tied,
        "vocab_size": VOCAB,
        "max_position_embeddings": MAX_POS,
        "hidden_act": "silu",
        "rope_scaling": null,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    })
}

/// Random weights scaled like an initialised model (projections U(-1,1)/√fan_in, norm
/// weights near 1), so activations stay O(1) through the layers.
fn random_weights(tied: bool) -> Weights {
    let config = Config::from_json(&config_json(tied).to_string()).expect("test config");
    config
        .tensors()
        .into_iter()
        .enumerate()
        .map(|(i, (name, dims))| {
            let shape: Vec<usize> = dims.iter().map(|d| d.0).collect();
            let n: usize = shape.iter().product();
            let r = random(n, 1000 + i as u64);
            let values = if shape.len() == 1 {
                r.iter().map(|x| 1.0 + 0.2 * x).collect()
            } else if name == "model.embed_tokens.weight" {
                r
            } else {
                let scale = 1.0 / (shape[1] as f32).sqrt();
                r.iter().map(|x| x * scale).collect()
            };
            (name, (shape, values))
        })
        .collect()
}

/// `values` as little-endian bytes of `dtype`.
fn bytes_of(values: &[f32], dtype: StDtype) -> Vec<u8> {
    match dtype {
        StDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        StDtype::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        StDtype::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        StDtype::F64 => values
            .iter()
            .flat_map(|&v| (v as f64).to_le_bytes())
            .collect(),
        other => panic!("test writes no {other:?}"),
    }
}

/// A fresh empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("openkern_llama_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes `config` and `weights` (each tensor stored as `dtype_of(name)`) to `dir`, in
/// `shards` safetensors files (with an index when more than one).
fn write_checkpoint(
    dir: &Path,
    config: &serde_json::Value,
    weights: &Weights,
    shards: usize,
    dtype_of: impl Fn(&str) -> StDtype,
) {
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    let data: Vec<(String, Vec<usize>, StDtype, Vec<u8>)> = weights
        .iter()
        .map(|(name, (shape, v))| {
            let dt = dtype_of(name);
            (name.clone(), shape.clone(), dt, bytes_of(v, dt))
        })
        .collect();
    let mut weight_map = serde_json::Map::new();
    for s in 0..shards {
        let file = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{shards:05}.safetensors", s + 1)
        };
        let views: Vec<(String, TensorView<'_>)> = data
            .iter()
            .enumerate()
            .filter(|(i, _)| i % shards == s)
            .map(|(_, (name, shape, dt, bytes))| {
                weight_map.insert(name.clone(), file.clone().into());
                (
                    name.clone(),
                    TensorView::new(*dt, shape.clone(), bytes).expect("view"),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, &None, &dir.join(&file)).expect("write shard");
    }
    if shards > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string())
            .expect("write index");
    }
}

/// The tiny checkpoint written once per test name, f32, one file.
fn checkpoint(name: &str, tied: bool) -> (PathBuf, Weights) {
    let dir = temp_dir(name);
    let w = random_weights(tied);
    write_checkpoint(&dir, &config_json(tied), &w, 1, |_| StDtype::F32);
    (dir, w)
}

// ---------------------------------------------------------------------------------------
// the f64 reference: the Hugging Face LlamaForCausalLM forward written out plainly

fn matvec(w: &(Vec<usize>, Vec<f32>), x: &[f64]) -> Vec<f64> {
    let (out, inp) = (w.0[0], w.0[1]);
    (0..out)
        .map(|o| (0..inp).map(|i| w.1[o * inp + i] as f64 * x[i]).sum())
        .collect()
}

fn rms(x: &[f64], w: &[f32]) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + EPS).sqrt();
    x.iter().zip(w).map(|(v, &g)| v * r * g as f64).collect()
}

fn rope(x: &mut [f64], position: usize) {
    let half = HEAD_DIM / 2;
    for head in x.chunks_mut(HEAD_DIM) {
        for i in 0..half {
            let angle = position as f64 * THETA.powf(-2.0 * i as f64 / HEAD_DIM as f64);
            let (s, c) = angle.sin_cos();
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * c - b * s;
            head[i + half] = b * c + a * s;
        }
    }
}

/// Logits `[ids.len()][VOCAB]` of every position, with weights rounded through `round`.
fn reference_logits(w: &Weights, ids: &[u32], tied: bool) -> Vec<Vec<f64>> {
    let get = |n: &str| &w[n];
    let embed = get("model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&id| {
            embed.1[id as usize * HIDDEN..(id as usize + 1) * HIDDEN]
                .iter()
                .map(|&v| v as f64)
                .collect()
        })
        .collect();
    for l in 0..LAYERS {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for (pos, x) in xs.iter().enumerate() {
            let h = rms(x, &get(&p("input_layernorm.weight")).1);
            let mut q = matvec(get(&p("self_attn.q_proj.weight")), &h);
            let mut k = matvec(get(&p("self_attn.k_proj.weight")), &h);
            rope(&mut q, pos);
            rope(&mut k, pos);
            qs.push(q);
            ks.push(k);
            vs.push(matvec(get(&p("self_attn.v_proj.weight")), &h));
        }
        for (i, x) in xs.iter_mut().enumerate() {
            let mut attn = vec![0.0; HEADS * HEAD_DIM];
            for h in 0..HEADS {
                let kvh = h / (HEADS / KV_HEADS);
                let q = &qs[i][h * HEAD_DIM..(h + 1) * HEAD_DIM];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        let k = &ks[j][kvh * HEAD_DIM..(kvh + 1) * HEAD_DIM];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (HEAD_DIM as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    for d in 0..HEAD_DIM {
                        attn[h * HEAD_DIM + d] += ej / z * vs[j][kvh * HEAD_DIM + d];
                    }
                }
            }
            let o = matvec(get(&p("self_attn.o_proj.weight")), &attn);
            for (xv, ov) in x.iter_mut().zip(o) {
                *xv += ov;
            }
            let h = rms(x, &get(&p("post_attention_layernorm.weight")).1);
            let gate = matvec(get(&p("mlp.gate_proj.weight")), &h);
            let up = matvec(get(&p("mlp.up_proj.weight")), &h);
            let act: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let down = matvec(get(&p("mlp.down_proj.weight")), &act);
            for (xv, dv) in x.iter_mut().zip(down) {
                *xv += dv;
            }
        }
    }
    let head = if tied {
        get("model.embed_tokens.weight")
    } else {
        get("lm_head.weight")
    };
    xs.iter()
        .map(|x| matvec(head, &rms(x, &get("model.norm.weight").1)))
        .collect()
}

/// Weights as a checkpoint stored in `dtype` holds them.
fn rounded(w: &Weights, dtype: DType) -> Weights {
    w.iter()
        .map(|(n, (s, v))| (n.clone(), (s.clone(), quantize(v, dtype))))
        .collect()
}

/// The model's logits of every prompt position, in one prefill.
fn model_logits(model: &Llama, ids: &[u32]) -> Vec<f32> {
    let mut seq = model.new_sequence(ids.len()).expect("sequence");
    let ids = model.prompt_ids(&seq, ids).expect("ids");
    let logits = model.logits(&mut seq, &ids).expect("logits");
    assert_eq!(logits.shape(), &[ids.len(), VOCAB]);
    logits.to_f32_vec().expect("read logits")
}

fn flat(v: &[Vec<f64>]) -> Vec<f64> {
    v.iter().flatten().copied().collect()
}

// ---------------------------------------------------------------------------------------
// (c) the model against the f64 reference

fn logits_match_reference(device: &Device) {
    for tied in [false, true] {
        let (dir, w) = checkpoint(&format!("ref_{tied}_{}", device.is_cpu()), tied);
        let model = Llama::load(&dir, device, DType::F32).expect("load");
        let got = model_logits(&model, &PROMPT);
        let want = flat(&reference_logits(&w, &PROMPT, tied));
        assert_close(
            &format!("f32 logits vs f64 reference (tied {tied})"),
            &got,
            &want,
            2e-4,
            2e-4,
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
backend_tests!(logits_match_reference => logits_match_reference_cpu, logits_match_reference_gpu);

// (b) decode token by token through the KV cache = re-running the whole prefix

fn decode_matches_full_prefix(device: &Device) {
    let (dir, _) = checkpoint(&format!("decode_{}", device.is_cpu()), false);
    let model = Llama::load(&dir, device, DType::F32).expect("load");
    let full = model_logits(&model, &PROMPT);
    // a 3-token chunk first (chunked prefill), then one token at a time
    let mut seq = model.new_sequence(PROMPT.len()).expect("sequence");
    let mut got = Vec::new();
    let first = model.prompt_ids(&seq, &PROMPT[..3]).expect("ids");
    got.extend(
        model
            .logits(&mut seq, &first)
            .expect("chunk")
            .to_f32_vec()
            .unwrap(),
    );
    for &id in &PROMPT[3..] {
        let ids = model.prompt_ids(&seq, &[id]).expect("id");
        let logits = model.logits(&mut seq, &ids).expect("step");
        assert_eq!(logits.shape(), &[1, VOCAB]);
        got.extend(logits.to_f32_vec().unwrap());
    }
    assert_eq!(seq.position(), PROMPT.len());
    let full: Vec<f64> = full.iter().map(|&v| v as f64).collect();
    assert_close(
        "decode through the KV cache vs full prefix",
        &got,
        &full,
        1e-4,
        1e-4,
    );
    let _ = std::fs::remove_dir_all(dir);
}
backend_tests!(decode_matches_full_prefix => decode_matches_full_prefix_cpu, decode_matches_full_prefix_gpu);

/// Greedy generation (argmax on the device, its id fed back without a host copy) picks
/// the argmax of the full-prefix logits at every step.
fn greedy_generation_is_argmax_of_full_prefix(device: &Device) {
    let (dir, _) = checkpoint(&format!("greedy_{}", device.is_cpu()), false);
    let model = Llama::load(&dir, device, DType::F32).expect("load");
    let g = generate(&model, &PROMPT, 6, |_| {}).expect("generate");
    assert!(!g.ids.is_empty() && g.ids.len() <= 6);
    let mut all = PROMPT.to_vec();
    all.extend(&g.ids);
    let logits = model_logits(&model, &all[..all.len() - 1]);
    for (step, &id) in g.ids.iter().enumerate() {
        let row = &logits[(PROMPT.len() - 1 + step) * VOCAB..][..VOCAB];
        let best = row
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0;
        assert_eq!(id as usize, best, "generated id at step {step}");
    }
    if !device.is_cpu() && g.decoded > 0 {
        // one submission per decoded token: the id readback
        let per_token = g.submissions as f64 / g.decoded as f64;
        assert!(
            per_token <= 1.5,
            "{per_token} submissions per decoded token"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
backend_tests!(greedy_generation_is_argmax_of_full_prefix => greedy_generation_cpu, greedy_generation_gpu);

// (a) GPU and CPU agree

#[test]
fn gpu_and_cpu_logits_agree() {
    let Some(gpu) = gpu() else {
        eprintln!("SKIPPED gpu_and_cpu_logits_agree: no GPU adapter");
        return;
    };
    let (dir, _) = checkpoint("gpu_cpu", false);
    for (dtype, tol) in [(DType::F32, 1e-4), (DType::F16, 3e-2)] {
        let cpu = model_logits(&Llama::load(&dir, &Device::cpu(), dtype).unwrap(), &PROMPT);
        let gpu = model_logits(&Llama::load(&dir, &gpu, dtype).unwrap(), &PROMPT);
        let cpu: Vec<f64> = cpu.iter().map(|&v| v as f64).collect();
        assert_close(&format!("GPU vs CPU logits, {dtype}"), &gpu, &cpu, tol, tol);
    }
    let _ = std::fs::remove_dir_all(dir);
}

// f16 / bf16 checkpoints, cast on load

fn half_checkpoints_load_with_cast(device: &Device) {
    let w = random_weights(false);
    let tag = device.is_cpu();
    for (stored, st, load_as, tol) in [
        // an f16 checkpoint run in f32: exact weights, f32 arithmetic
        (DType::F16, StDtype::F16, DType::F32, 2e-4),
        // a bf16 checkpoint run in bf16 (activations rounded to 8 bits of mantissa)
        (DType::BF16, StDtype::BF16, DType::BF16, 0.15),
        // an f32 checkpoint cast to f16 on load
        (DType::F32, StDtype::F32, DType::F16, 3e-2),
    ] {
        let dir = temp_dir(&format!("half_{stored}_{load_as}_{tag}"));
        write_checkpoint(&dir, &config_json(false), &w, 1, |_| st);
        let model = Llama::load(&dir, device, load_as).expect("load");
        assert_eq!(model.dtype(), load_as);
        let got = model_logits(&model, &PROMPT);
        let want = flat(&reference_logits(
            &rounded(&w, load_as.min_precision(stored)),
            &PROMPT,
            false,
        ));
        assert_close(
            &format!("{stored} checkpoint run as {load_as}"),
            &got,
            &want,
            tol,
            tol,
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
backend_tests!(half_checkpoints_load_with_cast => half_checkpoints_cpu, half_checkpoints_gpu);

/// The precision the weights end up with: the narrower of the stored and loaded dtype.
trait MinPrecision {
    fn min_precision(self, other: DType) -> DType;
}
impl MinPrecision for DType {
    fn min_precision(self, other: DType) -> DType {
        if self == DType::F32 {
            other
        } else {
            self
        }
    }
}

#[test]
fn sharded_checkpoint_with_index_loads() {
    let dir = temp_dir("sharded");
    let w = random_weights(false);
    write_checkpoint(&dir, &config_json(false), &w, 3, |_| StDtype::F32);
    assert!(dir.join("model.safetensors.index.json").exists());
    let model = Llama::load(&dir, &Device::cpu(), DType::F32).expect("load shards");
    let got = model_logits(&model, &PROMPT);
    let want = flat(&reference_logits(&w, &PROMPT, false));
    assert_close("sharded checkpoint", &got, &want, 2e-4, 2e-4);
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------
// bad checkpoints: each a typed error naming the tensor or field

/// Writes a variant of the tiny checkpoint and returns the error loading it gives.
fn load_error(
    name: &str,
    config: serde_json::Value,
    edit: impl FnOnce(&mut Weights),
    dtype_of: impl Fn(&str) -> StDtype,
) -> ModelError {
    let dir = temp_dir(name);
    let mut w = random_weights(false);
    edit(&mut w);
    write_checkpoint(&dir, &config, &w, 1, dtype_of);
    let err = Llama::load(&dir, &Device::cpu(), DType::F32)
        .err()
        .unwrap_or_else(|| panic!("{name}: loading succeeded"));
    let _ = std::fs::remove_dir_all(dir);
    err
}

fn expect_message(err: &ModelError, parts: &[&str]) {
    let msg = err.to_string();
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} should mention {p:?}");
    }
}

#[test]
fn missing_tensor_is_named() {
    let name = "model.layers.1.mlp.up_proj.weight";
    let err = load_error(
        "missing",
        config_json(false),
        |w| {
            w.remove(name);
        },
        |_| StDtype::F32,
    );
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err:?}");
    expect_message(&err, &[name]);
    // an untied config without lm_head.weight hints at tie_word_embeddings
    let err = load_error(
        "missing_head",
        config_json(false),
        |w| {
            w.remove("lm_head.weight");
        },
        |_| StDtype::F32,
    );
    expect_message(&err, &["lm_head.weight", "tie_word_embeddings"]);
}

#[test]
fn wrong_shape_is_named() {
    let name = "model.layers.0.mlp.down_proj.weight";
    let err = load_error(
        "shape",
        config_json(false),
        |w| {
            let t = w.get_mut(name).unwrap();
            t.0.reverse(); // stored transposed: [ffn, hidden]
        },
        |_| StDtype::F32,
    );
    assert!(matches!(err, ModelError::TensorShape { .. }), "{err:?}");
    expect_message(&err, &[name, "[128, 64]", "[64, 128]"]);
}

#[test]
fn unsupported_dtype_is_named() {
    let err = load_error(
        "dtype",
        config_json(false),
        |_| {},
        |n| {
            if n == "model.norm.weight" {
                StDtype::F64
            } else {
                StDtype::F32
            }
        },
    );
    assert!(matches!(err, ModelError::TensorDType { .. }), "{err:?}");
    expect_message(&err, &["model.norm.weight", "F64"]);
}

#[test]
fn config_disagreeing_with_weights_names_the_field() {
    let mut config = config_json(false);
    config["num_key_value_heads"] = 4.into();
    let err = load_error("cfg_kv", config, |_| {}, |_| StDtype::F32);
    assert!(matches!(err, ModelError::ConfigMismatch { .. }), "{err:?}");
    expect_message(&err, &["num_key_value_heads", "k_proj"]);

    let mut config = config_json(false);
    config["num_hidden_layers"] = 1.into();
    let err = load_error("cfg_layers", config, |_| {}, |_| StDtype::F32);
    expect_message(&err, &["num_hidden_layers = 1", "2"]);

    let mut config = config_json(false);
    config["vocab_size"] = 100.into();
    let err = load_error("cfg_vocab", config, |_| {}, |_| StDtype::F32);
    expect_message(
        &err,
        &["vocab_size = 100", "model.embed_tokens.weight", "97"],
    );

    let mut config = config_json(false);
    config.as_object_mut().unwrap().remove("hidden_size");
    let err = load_error("cfg_missing", config, |_| {}, |_| StDtype::F32);
    assert!(matches!(err, ModelError::Config { .. }), "{err:?}");
    expect_message(&err, &["hidden_size", "missing"]);

    let mut config = config_json(false);
    config["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0});
    let err = load_error("cfg_scaling", config, |_| {}, |_| StDtype::F32);
    expect_message(&err, &["rope_scaling", "llama3"]);
}

#[test]
fn truncated_safetensors_is_named() {
    let dir = temp_dir("truncated");
    write_checkpoint(&dir, &config_json(false), &random_weights(false), 1, |_| {
        StDtype::F32
    });
    let file = dir.join("model.safetensors");
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len - 100).unwrap();
    drop(f);
    let err = Checkpoint::open(&dir).err().expect("truncated file opens");
    assert!(matches!(err, ModelError::Safetensors { .. }), "{err:?}");
    expect_message(&err, &["model.safetensors", "truncated"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn prompt_longer_than_max_positions_is_refused() {
    let (dir, _) = checkpoint("long_prompt", false);
    let model = Llama::load(&dir, &Device::cpu(), DType::F32).unwrap();
    let prompt: Vec<u32> = (0..MAX_POS as u32 + 1).map(|i| i % VOCAB as u32).collect();
    let err = generate(&model, &prompt, 4, |_| {}).expect_err("too long");
    assert!(matches!(err, ModelError::PromptTooLong { .. }), "{err:?}");
    expect_message(&err, &["49 tokens", "max_position_embeddings is 48"]);
    // a prompt that fits, with more new tokens than positions left, stops at the limit
    let g = generate(&model, &prompt[..MAX_POS - 2], 10, |_| {}).expect("fits");
    assert!(
        g.ids.len() <= 2,
        "{} ids past max_position_embeddings",
        g.ids.len()
    );
    // an id past the vocabulary is refused before anything runs
    let seq = model.new_sequence(4).unwrap();
    let err = model.prompt_ids(&seq, &[1, 97]).expect_err("bad id");
    expect_message(&err, &["97", "vocab_size"]);
    let _ = std::fs::remove_dir_all(dir);
}

/// The loaded tensors live on the device asked for, in the dtype asked for.
#[test]
fn model_reports_device_and_dtype() {
    let (dir, _) = checkpoint("device", true);
    let device = Device::cpu();
    let model = Llama::load(&dir, &device, DType::BF16).unwrap();
    assert_eq!(model.dtype(), DType::BF16);
    assert!(model.device().is_cpu());
    let t = Tensor::from_slice(&device, &[1u32], &[1]).unwrap();
    let mut seq = model.new_sequence(2).unwrap();
    assert_eq!(model.next_token(&mut seq, &t).unwrap().shape(), &[1]);
    let _ = std::fs::remove_dir_all(dir);
}

/// The sampler draws from softmax(logits / T) over the top k: frequencies over many
/// draws match the probabilities, k = 1 and a tiny temperature are the argmax, and bad
/// settings or logits are errors, not a silent token.
#[test]
fn sampling_draws_from_the_tempered_top_k() {
    let logits = [1.0f32, 3.0, 2.0, -1.0, 3.0];
    let mut rng = TokenRng::new(7);
    // k = 1: the largest logit, lower id on a tie
    for _ in 0..50 {
        assert_eq!(sample_token(&logits, 1.0, 1, &mut rng).unwrap(), 1);
        assert_eq!(sample_token(&logits, 1e-3, 0, &mut rng).unwrap() % 3, 1);
    }
    for (t, k) in [(1.0f64, 0usize), (0.5, 3), (2.0, 2)] {
        let draws = 40_000;
        let mut counts = [0usize; 5];
        for _ in 0..draws {
            counts[sample_token(&logits, t as f32, k, &mut rng).unwrap() as usize] += 1;
        }
        // the expected probabilities, in f64, over the kept ids
        let mut ids: Vec<usize> = (0..5).collect();
        ids.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        let kept = if k == 0 { 5 } else { k };
        let w: Vec<f64> = (0..5)
            .map(|i| {
                if ids[..kept].contains(&i) {
                    (logits[i] as f64 / t).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let total: f64 = w.iter().sum();
        for i in 0..5 {
            let p = w[i] / total;
            let f = counts[i] as f64 / draws as f64;
            // 5 standard deviations of a binomial frequency
            let sd = (p * (1.0 - p) / draws as f64).sqrt();
            assert!(
                (f - p).abs() <= 5.0 * sd + 1e-9,
                "T {t} k {k} id {i}: frequency {f}, probability {p}"
            );
        }
    }
    for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let err = sample_token(&logits, bad, 0, &mut rng).expect_err("bad temperature");
        assert!(err.to_string().contains("temperature"), "{err}");
    }
    let err = sample_token(&[0.0, f32::NAN], 1.0, 0, &mut rng).expect_err("NaN logit");
    assert!(err.to_string().contains("NaN"), "{err}");
    let err = sample_token(&[f32::NEG_INFINITY; 3], 1.0, 0, &mut rng).expect_err("no finite");
    assert!(err.to_string().contains("finite"), "{err}");
}

/// Sampling through the model: top-k 1 gives the greedy ids (the logits read back and
/// the id uploaded agree with the on-device argmax), a seed reproduces its tokens, and a
/// bad temperature is refused before any work.
fn sampled_generation(device: &Device) {
    let (dir, _) = checkpoint(&format!("sampled_{}", device.is_cpu()), false);
    let model = Llama::load(&dir, device, DType::F32).expect("load");
    let greedy = generate(&model, &PROMPT, 6, |_| {}).expect("greedy").ids;
    let top1 = Sampling::Sample {
        temperature: 0.8,
        top_k: 1,
        seed: 3,
    };
    let g = generate_with(&model, &PROMPT, 6, top1, |_| {}).expect("top-1");
    assert_eq!(g.ids, greedy, "top-k 1 is greedy");
    let warm = Sampling::Sample {
        temperature: 1.5,
        top_k: 0,
        seed: 11,
    };
    let a = generate_with(&model, &PROMPT, 8, warm, |_| {}).expect("sampled");
    let b = generate_with(&model, &PROMPT, 8, warm, |_| {}).expect("sampled again");
    assert_eq!(a.ids, b.ids, "same seed, same tokens");
    assert!(a.ids.iter().all(|&id| (id as usize) < VOCAB));
    let bad = Sampling::Sample {
        temperature: f32::NAN,
        top_k: 0,
        seed: 0,
    };
    let err = generate_with(&model, &PROMPT, 4, bad, |_| {}).expect_err("NaN temperature");
    assert!(matches!(err, ModelError::Sampling { .. }), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
backend_tests!(sampled_generation => sampled_generation_cpu, sampled_generation_gpu);
