//! A LLaMA-architecture decoder built only from openkern's public API: the module an
//! inference engine copies.
//!
//! - [`Config`]: the fields of a Hugging Face `config.json` the architecture needs.
//! - [`Checkpoint`]: one or several memory-mapped `*.safetensors` files (with
//!   `model.safetensors.index.json` when sharded), tensors looked up by their Hugging Face
//!   names and checked against the config before anything is uploaded.
//! - [`Llama`]: the weights on a [`Device`], in one activation dtype (f32, f16 or bf16;
//!   the checkpoint's dtype is cast on load when they differ; norm weights stay f32).
//! - [`Sequence`]: one KV cache per layer for one sequence, and its position. An engine
//!   keeps one per live sequence.
//!
//! Everything between the token ids and the next token's id stays on the device: the
//! greedy argmax runs there and only the id (4 bytes) is read back, so on a GPU each
//! decoded token is one submission.

use openkern::ops::attention::{AttentionLayout, AttentionOptions};
use openkern::ops::kv_cache::{CachePosition, KvCache};
use openkern::ops::{self, RopeAxes, RopeLayout, RopeOptions};
use openkern::{DType, Device, Tensor};
use safetensors::tensor::{Dtype as StDtype, Metadata};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong loading or running a model; each message names the file,
/// field or tensor at fault.
#[derive(Debug)]
pub enum ModelError {
    /// A file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `config.json` (or the shard index) is not valid JSON, or a field is missing or
    /// has the wrong type or value.
    Config {
        /// The field (or the file, for a JSON syntax error).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A config value the architecture here does not implement (e.g. `rope_scaling`).
    Unsupported {
        /// The field.
        field: String,
        /// Its value and why it is refused.
        problem: String,
    },
    /// A safetensors file whose header or data is malformed or truncated.
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors crate found.
        problem: String,
    },
    /// A tensor the model needs is in none of the checkpoint files.
    MissingTensor {
        /// Its Hugging Face name.
        name: String,
        /// Where it was looked for, and a hint.
        searched: String,
    },
    /// A tensor whose rank is not what the architecture needs.
    TensorShape {
        /// Its name.
        name: String,
        /// Its shape in the file.
        got: Vec<usize>,
        /// The shape config.json implies.
        expected: Vec<usize>,
    },
    /// A tensor stored in a dtype other than f32, f16 or bf16.
    TensorDType {
        /// Its name.
        name: String,
        /// Its dtype in the file.
        dtype: String,
    },
    /// `config.json` and the weights disagree on a size.
    ConfigMismatch {
        /// The config field (or product of fields) that implies the size.
        field: String,
        /// The value config.json gives.
        config: usize,
        /// The tensor that disagrees and what it holds.
        tensor: String,
        /// The size in the tensor.
        checkpoint: usize,
    },
    /// The prompt (plus the tokens to generate) does not fit the model's positions.
    PromptTooLong {
        /// Prompt length in tokens.
        prompt: usize,
        /// `max_position_embeddings`.
        max_position_embeddings: usize,
    },
    /// A prompt token id at or past `vocab_size`, or an empty prompt.
    Prompt {
        /// What is wrong.
        problem: String,
    },
    /// Sampling settings out of range, or logits a token cannot be drawn from.
    Sampling {
        /// What is wrong.
        problem: String,
    },
    /// An error from openkern itself.
    Openkern(openkern::Error),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ModelError::Config { field, problem } => write!(f, "config.json: `{field}` {problem}"),
            ModelError::Unsupported { field, problem } => {
                write!(f, "config.json: `{field}` {problem}; this example does not implement it")
            }
            ModelError::Safetensors { path, problem } => write!(
                f,
                "{}: not a valid safetensors file ({problem}); is it truncated or still downloading?",
                path.display()
            ),
            ModelError::MissingTensor { name, searched } => {
                write!(f, "tensor `{name}` is missing from the checkpoint ({searched})")
            }
            ModelError::TensorShape {
                name,
                got,
                expected,
            } => write!(
                f,
                "tensor `{name}` has shape {got:?}; config.json implies {expected:?}"
            ),
            ModelError::TensorDType { name, dtype } => write!(
                f,
                "tensor `{name}` is stored as {dtype}; this loader reads F32, F16 and BF16 (convert the checkpoint)"
            ),
            ModelError::ConfigMismatch {
                field,
                config,
                tensor,
                checkpoint,
            } => write!(
                f,
                "config.json and the weights disagree: {field} = {config}, but {tensor} is {checkpoint}; fix config.json or use the matching checkpoint"
            ),
            ModelError::PromptTooLong {
                prompt,
                max_position_embeddings,
            } => write!(
                f,
                "the prompt has {prompt} tokens but the model's max_position_embeddings is {max_position_embeddings}; shorten the prompt"
            ),
            ModelError::Prompt { problem } => write!(f, "prompt: {problem}"),
            ModelError::Sampling { problem } => write!(f, "sampling: {problem}"),
            ModelError::Openkern(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModelError::Io { source, .. } => Some(source),
            ModelError::Openkern(e) => Some(e),
            _ => None,
        }
    }
}

impl From<openkern::Error> for ModelError {
    fn from(e: openkern::Error) -> Self {
        ModelError::Openkern(e)
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, ModelError>;

// ---------------------------------------------------------------------------------------
// config.json

/// The architecture's sizes, read from a Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to `num_attention_heads`.
    pub num_key_value_heads: usize,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    pub head_dim: usize,
    /// RMS norm epsilon (default 1e-6).
    pub rms_norm_eps: f32,
    /// RoPE frequency base (default 10 000).
    pub rope_theta: f32,
    /// The LM head reuses the embedding table (default false, as in transformers).
    pub tie_word_embeddings: bool,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest sequence the model was trained for (default 2048).
    pub max_position_embeddings: usize,
    /// End-of-sequence ids (`eos_token_id`, a number or a list); generation stops there.
    pub eos_token_ids: Vec<u32>,
}

impl Config {
    /// Reads `config.json` from a checkpoint directory.
    pub fn from_dir(dir: &Path) -> Result<Config> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        Config::from_json(&text)
    }

    /// Parses the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Config> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ModelError::Config {
            field: "(file)".into(),
            problem: format!("is not valid JSON: {e}"),
        })?;
        let bad = |field: &str, problem: String| ModelError::Config {
            field: field.into(),
            problem,
        };
        let size = |field: &str| -> Result<Option<usize>> {
            match v.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => match x.as_u64() {
                    Some(n) if n > 0 => Ok(Some(n as usize)),
                    _ => Err(bad(field, format!("is {x}; it must be a positive integer"))),
                },
            }
        };
        let required =
            |field: &str| size(field)?.ok_or_else(|| bad(field, "is missing".to_string()));
        let float = |field: &str, default: f64| -> Result<f32> {
            match v.get(field) {
                None | Some(serde_json::Value::Null) => Ok(default as f32),
                Some(x) => match x.as_f64() {
                    Some(f) if f.is_finite() && f >= 0.0 => Ok(f as f32),
                    _ => Err(bad(
                        field,
                        format!("is {x}; it must be a finite number >= 0"),
                    )),
                },
            }
        };
        if let Some(x) = v.get("hidden_act") {
            if x.as_str() != Some("silu") {
                return Err(ModelError::Unsupported {
                    field: "hidden_act".into(),
                    problem: format!("is {x}; the LLaMA MLP here is SwiGLU (\"silu\")"),
                });
            }
        }
        if let Some(x) = v.get("rope_scaling") {
            let default = x.is_null()
                || x.get("rope_type")
                    .or_else(|| x.get("type"))
                    .and_then(|t| t.as_str())
                    == Some("default");
            if !default {
                return Err(ModelError::Unsupported {
                    field: "rope_scaling".into(),
                    problem: format!("is {x}; only plain RoPE (null) is implemented"),
                });
            }
        }
        for field in ["attention_bias", "mlp_bias"] {
            if v.get(field).and_then(|x| x.as_bool()) == Some(true) {
                return Err(ModelError::Unsupported {
                    field: field.into(),
                    problem: "is true; LLaMA projections here have no bias".into(),
                });
            }
        }
        let hidden_size = required("hidden_size")?;
        let num_attention_heads = required("num_attention_heads")?;
        let num_key_value_heads = size("num_key_value_heads")?.unwrap_or(num_attention_heads);
        if !num_attention_heads.is_multiple_of(num_key_value_heads) {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "is {num_key_value_heads}; it must divide num_attention_heads ({num_attention_heads})"
                ),
            ));
        }
        let head_dim = match size("head_dim")? {
            Some(d) => d,
            None if hidden_size.is_multiple_of(num_attention_heads) => {
                hidden_size / num_attention_heads
            }
            None => {
                return Err(bad(
                    "head_dim",
                    format!("is missing and hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"),
                ))
            }
        };
        if !head_dim.is_multiple_of(2) {
            return Err(bad(
                "head_dim",
                format!("is {head_dim}; RoPE needs it even"),
            ));
        }
        let rope_theta = float("rope_theta", 10_000.0)?;
        if rope_theta <= 0.0 {
            return Err(bad("rope_theta", "must be positive".into()));
        }
        let eos_token_ids = match v.get("eos_token_id") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_u64().map(|n| n as u32))
                .collect(),
            Some(x) => x.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        };
        let tie_word_embeddings = match v.get("tie_word_embeddings") {
            None | Some(serde_json::Value::Null) => false,
            Some(x) => x.as_bool().ok_or_else(|| {
                bad(
                    "tie_word_embeddings",
                    format!("is {x}; it must be true or false"),
                )
            })?,
        };
        Ok(Config {
            hidden_size,
            intermediate_size: required("intermediate_size")?,
            num_hidden_layers: required("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: float("rms_norm_eps", 1e-6)?,
            rope_theta,
            tie_word_embeddings,
            vocab_size: required("vocab_size")?,
            max_position_embeddings: size("max_position_embeddings")?.unwrap_or(2048),
            eos_token_ids,
        })
    }

    /// Every tensor the model reads, with the shape this config implies and, per
    /// dimension, the config fields it comes from (for error messages).
    pub fn tensors(&self) -> Vec<(String, Vec<(usize, String)>)> {
        let h = (self.hidden_size, "hidden_size".to_string());
        let q = (
            self.num_attention_heads * self.head_dim,
            format!(
                "num_attention_heads × head_dim ({} × {})",
                self.num_attention_heads, self.head_dim
            ),
        );
        let kv = (
            self.num_key_value_heads * self.head_dim,
            format!(
                "num_key_value_heads × head_dim ({} × {})",
                self.num_key_value_heads, self.head_dim
            ),
        );
        let ffn = (self.intermediate_size, "intermediate_size".to_string());
        let vocab = (self.vocab_size, "vocab_size".to_string());
        let mut v = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![vocab.clone(), h.clone()],
        )];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            for (name, shape) in [
                ("input_layernorm.weight", vec![h.clone()]),
                ("self_attn.q_proj.weight", vec![q.clone(), h.clone()]),
                ("self_attn.k_proj.weight", vec![kv.clone(), h.clone()]),
                ("self_attn.v_proj.weight", vec![kv.clone(), h.clone()]),
                ("self_attn.o_proj.weight", vec![h.clone(), q.clone()]),
                ("post_attention_layernorm.weight", vec![h.clone()]),
                ("mlp.gate_proj.weight", vec![ffn.clone(), h.clone()]),
                ("mlp.up_proj.weight", vec![ffn.clone(), h.clone()]),
                ("mlp.down_proj.weight", vec![h.clone(), ffn.clone()]),
            ] {
                v.push((format!("{p}.{name}"), shape));
            }
        }
        v.push(("model.norm.weight".into(), vec![h.clone()]));
        if !self.tie_word_embeddings {
            v.push(("lm_head.weight".into(), vec![vocab, h]));
        }
        v
    }
}

// ---------------------------------------------------------------------------------------
// safetensors checkpoint

/// One memory-mapped safetensors file with its parsed header.
struct Shard {
    path: PathBuf,
    map: memmap2::Mmap,
    /// Byte offset of the data section (8 + header length).
    data_start: usize,
    metadata: Metadata,
}

/// The safetensors files of a checkpoint directory, memory-mapped: tensor data is read
/// from the page cache when a tensor is uploaded, never copied whole into memory.
pub struct Checkpoint {
    shards: Vec<Shard>,
    /// Tensor name → shard index.
    names: HashMap<String, usize>,
}

impl Checkpoint {
    /// Opens `dir/model.safetensors.index.json`'s shards when the index exists, else
    /// every `*.safetensors` file in `dir`.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ModelError::Io { path, source }
        };
        let index = dir.join("model.safetensors.index.json");
        let mut files: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(io(&index))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ModelError::Config {
                    field: "model.safetensors.index.json".into(),
                    problem: format!("is not valid JSON: {e}"),
                })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::Config {
                    field: "model.safetensors.index.json: weight_map".into(),
                    problem: "is missing or not an object".into(),
                })?;
            let mut files: Vec<PathBuf> = map
                .values()
                .filter_map(|f| f.as_str().map(|f| dir.join(f)))
                .collect();
            files.sort();
            files.dedup();
            files
        } else {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(io(dir))? {
                let path = entry.map_err(io(dir))?.path();
                if path.extension().is_some_and(|e| e == "safetensors") {
                    files.push(path);
                }
            }
            files.sort();
            files
        };
        if files.is_empty() {
            return Err(ModelError::MissingTensor {
                name: "model.embed_tokens.weight".into(),
                searched: format!("no *.safetensors file in {}", dir.display()),
            });
        }
        let mut shards = Vec::new();
        let mut names = HashMap::new();
        for path in files.drain(..) {
            let file = std::fs::File::open(&path).map_err(io(&path))?;
            // SAFETY: the map is read-only; a checkpoint rewritten while it is open is the
            // caller's race, as with any mmap-based loader (safetensors' own included).
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io(&path))?;
            let (header_len, metadata) =
                SafeTensors::read_metadata(&map).map_err(|e| ModelError::Safetensors {
                    path: path.clone(),
                    problem: e.to_string(),
                })?;
            for name in metadata.tensors().keys() {
                names.insert(name.clone(), shards.len());
            }
            shards.push(Shard {
                path,
                map,
                data_start: 8 + header_len,
                metadata,
            });
        }
        Ok(Checkpoint { shards, names })
    }

    /// Names of every tensor in the checkpoint.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// The shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        let shard = &self.shards[*self.names.get(name)?];
        shard.metadata.info(name).map(|i| i.shape.as_slice())
    }

    /// The dtype tensor `name` is stored in, or the error for a missing tensor or a
    /// dtype this loader does not read.
    pub fn stored_dtype(&self, name: &str) -> Result<DType> {
        self.info(name).and_then(|(_, info)| match info.dtype {
            StDtype::F32 => Ok(DType::F32),
            StDtype::F16 => Ok(DType::F16),
            StDtype::BF16 => Ok(DType::BF16),
            other => Err(ModelError::TensorDType {
                name: name.into(),
                dtype: format!("{other:?}"),
            }),
        })
    }

    fn info(&self, name: &str) -> Result<(&Shard, &safetensors::tensor::TensorInfo)> {
        let Some(&i) = self.names.get(name) else {
            return Err(ModelError::MissingTensor {
                name: name.into(),
                searched: format!(
                    "looked in {}",
                    self.shards
                        .iter()
                        .map(|s| s.path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        let shard = &self.shards[i];
        let info = shard.metadata.info(name).expect("indexed names have info");
        Ok((shard, info))
    }

    /// Uploads tensor `name` to `device` in its stored dtype, then casts it to `dtype`
    /// (on the device).
    pub fn load(&self, device: &Device, name: &str, dtype: DType) -> Result<Tensor> {
        let stored = self.stored_dtype(name)?;
        let (shard, info) = self.info(name)?;
        let (start, end) = info.data_offsets;
        let bytes = &shard.map[shard.data_start + start..shard.data_start + end];
        let t = Tensor::from_bytes(device, bytes, &info.shape, stored)?;
        Ok(if stored == dtype { t } else { t.cast(dtype)? })
    }
}

// ---------------------------------------------------------------------------------------
// the model

/// One decoder layer's weights (projections `[out, in]`, as `ops::linear` takes them).
///
/// The q, k and v projections are stacked into one `[q + 2·kv, hidden]` weight at load,
/// and gate and up into one `[2·ffn, hidden]`: one GEMM each instead of three and two
/// (k and v alone are narrow GEMMs), their outputs split with `ops::split` (views in
/// decode, one copy per part in prefill).
struct Layer {
    input_norm: Tensor,
    qkv: Tensor,
    o: Tensor,
    post_norm: Tensor,
    gate_up: Tensor,
    down: Tensor,
}

/// A LLaMA decoder's weights on one device.
pub struct Llama {
    /// The sizes.
    pub config: Config,
    device: Device,
    dtype: DType,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// The embedding table itself when the head is tied.
    lm_head: Tensor,
}

/// One sequence's decoding state: a KV cache per layer and the number of tokens in it.
pub struct Sequence {
    caches: Vec<KvCache>,
    position: usize,
}

impl Sequence {
    /// Tokens already in the caches.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Rows each cache holds.
    pub fn capacity(&self) -> usize {
        self.caches.first().map_or(0, KvCache::max_len)
    }
}

impl Llama {
    /// Loads `config.json` and the safetensors weights of a Hugging Face checkpoint
    /// directory onto `device`, casting them to `dtype` (norm weights stay f32).
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Llama> {
        let config = Config::from_dir(dir)?;
        let checkpoint = Checkpoint::open(dir)?;
        Llama::from_checkpoint(config, &checkpoint, device, dtype)
    }

    /// Checks every tensor's presence, dtype and shape against `config`, then uploads.
    pub fn from_checkpoint(
        config: Config,
        checkpoint: &Checkpoint,
        device: &Device,
        dtype: DType,
    ) -> Result<Llama> {
        // a checkpoint with more layers than config.json says is a mismatch, not a
        // model to run silently truncated
        if let Some(extra) = checkpoint
            .names()
            .filter_map(|n| {
                n.strip_prefix("model.layers.")?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .filter(|&l| l >= config.num_hidden_layers)
        {
            return Err(ModelError::ConfigMismatch {
                field: "num_hidden_layers".into(),
                config: config.num_hidden_layers,
                tensor: "the checkpoint's layer count (model.layers.N)".into(),
                checkpoint: extra + 1,
            });
        }
        let wanted = config.tensors();
        for (name, dims) in &wanted {
            let Some(got) = checkpoint.shape(name) else {
                let hint = if name == "lm_head.weight" {
                    "; if the head shares the embedding, set tie_word_embeddings: true"
                } else if name.starts_with("model.layers.") {
                    "; check num_hidden_layers"
                } else {
                    ""
                };
                return Err(ModelError::MissingTensor {
                    name: name.clone(),
                    searched: format!(
                        "{} tensors in {} file(s){hint}",
                        checkpoint.names.len(),
                        checkpoint.shards.len()
                    ),
                });
            };
            let expected: Vec<usize> = dims.iter().map(|d| d.0).collect();
            if got.len() != expected.len() {
                return Err(ModelError::TensorShape {
                    name: name.clone(),
                    got: got.to_vec(),
                    expected,
                });
            }
            if got != expected.as_slice() {
                // A transposed matrix is a wrong shape; a single size that differs is a
                // config field that disagrees with the weights.
                let mut swapped = expected.clone();
                swapped.reverse();
                let differing: Vec<usize> =
                    (0..got.len()).filter(|&i| got[i] != expected[i]).collect();
                if got == swapped.as_slice() || differing.len() != 1 {
                    return Err(ModelError::TensorShape {
                        name: name.clone(),
                        got: got.to_vec(),
                        expected,
                    });
                }
                let i = differing[0];
                return Err(ModelError::ConfigMismatch {
                    field: dims[i].1.clone(),
                    config: expected[i],
                    tensor: format!("dimension {i} of `{name}` (shape {got:?})"),
                    checkpoint: got[i],
                });
            }
        }
        for (name, _) in &wanted {
            checkpoint.stored_dtype(name)?;
        }
        Llama::from_fn(config, device, dtype, |name, _, dtype| {
            checkpoint.load(device, name, dtype)
        })
    }

    /// Builds the model from tensors given by name (`get(name, shape, dtype)`: a
    /// checkpoint, or random weights for a benchmark). Shapes are those of
    /// [`Config::tensors`]; norm weights are asked for in f32 (parameters may stay f32
    /// whatever the activation dtype, which keeps them exact), everything else in `dtype`.
    pub fn from_fn(
        config: Config,
        device: &Device,
        dtype: DType,
        mut get: impl FnMut(&str, &[usize], DType) -> Result<Tensor>,
    ) -> Result<Llama> {
        let shapes: HashMap<String, Vec<usize>> = config
            .tensors()
            .into_iter()
            .map(|(n, d)| (n, d.into_iter().map(|x| x.0).collect()))
            .collect();
        let mut load = |name: &str, dtype: DType| get(name, &shapes[name], dtype);
        let embed = load("model.embed_tokens.weight", dtype)?;
        let mut layers = Vec::new();
        for l in 0..config.num_hidden_layers {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            let q = load(&p("self_attn.q_proj.weight"), dtype)?;
            let k = load(&p("self_attn.k_proj.weight"), dtype)?;
            let v = load(&p("self_attn.v_proj.weight"), dtype)?;
            let gate = load(&p("mlp.gate_proj.weight"), dtype)?;
            let up = load(&p("mlp.up_proj.weight"), dtype)?;
            layers.push(Layer {
                input_norm: load(&p("input_layernorm.weight"), DType::F32)?,
                qkv: ops::concat(&[&q, &k, &v], 0)?,
                o: load(&p("self_attn.o_proj.weight"), dtype)?,
                post_norm: load(&p("post_attention_layernorm.weight"), DType::F32)?,
                gate_up: ops::concat(&[&gate, &up], 0)?,
                down: load(&p("mlp.down_proj.weight"), dtype)?,
            });
        }
        let norm = load("model.norm.weight", DType::F32)?;
        let lm_head = if config.tie_word_embeddings {
            embed.clone()
        } else {
            load("lm_head.weight", dtype)?
        };
        Ok(Llama {
            config,
            device: device.clone(),
            dtype,
            embed,
            layers,
            norm,
            lm_head,
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The activation (and weight) dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// An empty sequence whose caches hold `capacity` tokens (at most
    /// `max_position_embeddings`).
    pub fn new_sequence(&self, capacity: usize) -> Result<Sequence> {
        let c = &self.config;
        let capacity = capacity.clamp(1, c.max_position_embeddings);
        let caches = (0..c.num_hidden_layers)
            .map(|_| {
                KvCache::new(
                    &self.device,
                    1,
                    c.num_key_value_heads,
                    capacity,
                    c.head_dim,
                    c.head_dim,
                    self.dtype,
                )
            })
            .collect::<openkern::Result<_>>()?;
        Ok(Sequence {
            caches,
            position: 0,
        })
    }

    /// Checks host token ids and uploads them as a u32 `[n]` tensor.
    pub fn prompt_ids(&self, sequence: &Sequence, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(ModelError::Prompt {
                problem: "it is empty; give at least one token id".into(),
            });
        }
        if let Some(&bad) = ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(ModelError::Prompt {
                problem: format!(
                    "token id {bad} is not below vocab_size {}",
                    self.config.vocab_size
                ),
            });
        }
        let end = sequence.position + ids.len();
        if end > self.config.max_position_embeddings {
            return Err(ModelError::PromptTooLong {
                prompt: end,
                max_position_embeddings: self.config.max_position_embeddings,
            });
        }
        Ok(Tensor::from_slice(&self.device, ids, &[ids.len()])?)
    }

    /// Runs `ids` (u32 `[n]`, on the device: a prompt, or the previous step's argmax)
    /// through every layer at the sequence's position, appending their keys and values
    /// to its caches, and returns the final-normed hidden states `[n, hidden]`.
    /// Records ops only: nothing is read back.
    pub fn forward(&self, sequence: &mut Sequence, ids: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let n = ids.shape().first().copied().unwrap_or(0);
        let position = sequence.position;
        if position + n > sequence.capacity() {
            return Err(ModelError::PromptTooLong {
                prompt: position + n,
                max_position_embeddings: sequence.capacity().min(c.max_position_embeddings),
            });
        }
        let rope = RopeOptions {
            theta: c.rope_theta,
            layout: RopeLayout::Halves,
            axes: RopeAxes::SeqHeadsDim,
            offset: position,
            rotary_dim: None,
        };
        let causal = AttentionOptions {
            causal: true,
            layout: AttentionLayout::SeqFirst,
            ..Default::default()
        };
        let eps = c.rms_norm_eps;
        let mut residual = ops::embedding(ids, &self.embed)?;
        // the residual add of each block is fused into the next block's norm
        let mut pending: Option<Tensor> = None;
        for (layer, cache) in self.layers.iter().zip(&mut sequence.caches) {
            let h = add_then_norm(&mut residual, pending.take(), &layer.input_norm, eps)?;
            let (qd, kvd) = (
                c.num_attention_heads * c.head_dim,
                c.num_key_value_heads * c.head_dim,
            );
            let qkv = ops::linear(&h, &layer.qkv, None, None)?;
            let [q, k, v]: [Tensor; 3] = ops::split(&qkv, &[qd, kvd, kvd], 1)?
                .try_into()
                .expect("split gives one part per size");
            let q = q.reshape(&[1, n, c.num_attention_heads, c.head_dim])?;
            let k = k.reshape(&[1, n, c.num_key_value_heads, c.head_dim])?;
            let v = v.reshape(&[1, n, c.num_key_value_heads, c.head_dim])?;
            let q = ops::rope(&q, &rope)?;
            let k = ops::rope(&k, &rope)?;
            cache.append(
                &k,
                &v,
                CachePosition::Host(position),
                AttentionLayout::SeqFirst,
            )?;
            let attn = cache
                .attention(&q, &causal)?
                .reshape(&[n, c.num_attention_heads * c.head_dim])?;
            let o = ops::linear(&attn, &layer.o, None, None)?;
            let h = add_then_norm(&mut residual, Some(o), &layer.post_norm, eps)?;
            let gate_up = ops::linear(&h, &layer.gate_up, None, None)?;
            let ffn = c.intermediate_size;
            let [gate, up]: [Tensor; 2] = ops::split(&gate_up, &[ffn, ffn], 1)?
                .try_into()
                .expect("split gives one part per size");
            let act = ops::swiglu(&gate, &up)?;
            pending = Some(ops::linear(&act, &layer.down, None, None)?);
        }
        sequence.position += n;
        add_then_norm(&mut residual, pending, &self.norm, eps)
    }

    /// Logits `[n, vocab]` of every position of `ids` (in the model's dtype).
    pub fn logits(&self, sequence: &mut Sequence, ids: &Tensor) -> Result<Tensor> {
        let hidden = self.forward(sequence, ids)?;
        Ok(ops::linear(&hidden, &self.lm_head, None, None)?)
    }

    /// Runs `ids` and returns the logits of the last position, `[1, vocab]`, on the
    /// device (for sampling; greedy decoding stays on the device with
    /// [`Llama::next_token`]).
    pub fn last_logits(&self, sequence: &mut Sequence, ids: &Tensor) -> Result<Tensor> {
        let hidden = self.forward(sequence, ids)?;
        let last = last_row(&hidden)?;
        Ok(ops::linear(&last, &self.lm_head, None, None)?)
    }

    /// Runs `ids` and returns the greedy next token as a u32 `[1]` tensor on the
    /// device: only the last position goes through the LM head, and the argmax runs on
    /// the device, so reading the id back is the only transfer.
    pub fn next_token(&self, sequence: &mut Sequence, ids: &Tensor) -> Result<Tensor> {
        let hidden = self.forward(sequence, ids)?;
        let last = last_row(&hidden)?;
        let logits = ops::linear(&last, &self.lm_head, None, None)?;
        Ok(ops::argmax(&logits)?)
    }
}

/// `residual += x` (when there is an `x`) and the RMS norm of the result, in one fused
/// pass where there is something to add.
fn add_then_norm(
    residual: &mut Tensor,
    x: Option<Tensor>,
    weight: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    Ok(match x {
        None => ops::rms_norm(residual, weight, eps)?,
        Some(x) => {
            let r = ops::add_rms_norm(&x, residual, weight, eps)?;
            *residual = r.sum;
            r.normed
        }
    })
}

/// The last row of `[n, hidden]` hidden states, as `[1, hidden]`: a narrow of the
/// outermost dimension, which is a view (no copy) where the row starts at an offset the
/// device can bind, else one small copy.
fn last_row(hidden: &Tensor) -> Result<Tensor> {
    let n = hidden.shape()[0];
    Ok(ops::narrow(hidden, 0, n - 1, 1)?)
}

/// Greedy generation: runs the prompt, then decodes up to `max_new_tokens` one at a
/// time (stopping after an end-of-sequence id), calling `on_token` with each id as it
/// is read back. Returns the generated ids and the timings.
pub fn generate(
    model: &Llama,
    prompt: &[u32],
    max_new_tokens: usize,
    on_token: impl FnMut(u32),
) -> Result<Generation> {
    generate_with(model, prompt, max_new_tokens, Sampling::Greedy, on_token)
}

/// How [`generate_with`] picks each next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most likely token. The argmax runs on the device and its id tensor is the
    /// next step's input, so only the id (4 bytes) is read back per token.
    Greedy,
    /// A draw from softmax(logits / temperature) over the `top_k` most likely tokens
    /// (`top_k` 0: all of them), from a generator seeded with `seed` (the same seed
    /// gives the same tokens). The last position's logits are read back (4 bytes per
    /// vocabulary entry) and the draw is made on the host; the drawn id is uploaded as
    /// the next input.
    Sample {
        /// Softmax temperature, finite and > 0 (below 1 sharpens, above 1 flattens).
        temperature: f32,
        /// Keep only this many most likely tokens; 0 keeps all.
        top_k: usize,
        /// Generator seed.
        seed: u64,
    },
}

/// A small seeded generator (xorshift64*) for [`sample_token`]: reproducible draws
/// without a dependency.
#[derive(Debug, Clone)]
pub struct TokenRng(u64);

impl TokenRng {
    /// A generator from `seed` (any value, 0 included).
    pub fn new(seed: u64) -> TokenRng {
        TokenRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws a token id from softmax(`logits` / `temperature`) restricted to the `top_k`
/// largest logits (0: all), in f64. Ties at the k-th logit keep the lower ids.
/// Refuses a temperature that is not finite and > 0, and logits with NaN or with no
/// finite value among the kept ones.
pub fn sample_token(
    logits: &[f32],
    temperature: f32,
    top_k: usize,
    rng: &mut TokenRng,
) -> Result<u32> {
    check_temperature(temperature)?;
    if let Some(i) = logits.iter().position(|v| v.is_nan()) {
        return Err(ModelError::Sampling {
            problem: format!("logit {i} is NaN; the model produced invalid values"),
        });
    }
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let k = if top_k == 0 {
        logits.len()
    } else {
        top_k.min(logits.len())
    };
    // the k largest first (descending by logit, then ascending id), in O(n)
    let by_rank = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    if k < order.len() {
        order.select_nth_unstable_by(k, by_rank);
        order.truncate(k);
    }
    let max = order
        .iter()
        .map(|&i| logits[i as usize])
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return Err(ModelError::Sampling {
            problem: "no kept logit is finite (all −∞ or +∞)".into(),
        });
    }
    let t = temperature as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i as usize] as f64 - max as f64) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.next_f64() * total;
    for (&id, w) in order.iter().zip(&weights) {
        if u < *w {
            return Ok(id);
        }
        u -= w;
    }
    // rounding left u at the very top: the last token with any weight
    Ok(*order
        .iter()
        .zip(&weights)
        .rev()
        .find(|(_, w)| **w > 0.0)
        .map(|(id, _)| id)
        .expect("the largest logit has weight 1"))
}

/// Refuses a sampling temperature that is not finite and > 0.
fn check_temperature(temperature: f32) -> Result<()> {
    if temperature.is_finite() && temperature > 0.0 {
        Ok(())
    } else {
        Err(ModelError::Sampling {
            problem: format!(
                "temperature {temperature} must be finite and > 0 (use greedy decoding for 0)"
            ),
        })
    }
}

/// [`generate`] with a choice of [`Sampling`].
pub fn generate_with(
    model: &Llama,
    prompt: &[u32],
    max_new_tokens: usize,
    sampling: Sampling,
    mut on_token: impl FnMut(u32),
) -> Result<Generation> {
    let c = &model.config;
    if prompt.len() > c.max_position_embeddings {
        return Err(ModelError::PromptTooLong {
            prompt: prompt.len(),
            max_position_embeddings: c.max_position_embeddings,
        });
    }
    if let Sampling::Sample { temperature, .. } = sampling {
        check_temperature(temperature)?;
    }
    // positions past max_position_embeddings are never generated
    let max_new_tokens = max_new_tokens.min(c.max_position_embeddings - prompt.len());
    let mut sequence = model.new_sequence(prompt.len() + max_new_tokens.max(1))?;
    let ids = model.prompt_ids(&sequence, prompt)?;
    let device = model.device();
    device.sync()?;
    let mut rng = match sampling {
        Sampling::Sample { seed, .. } => TokenRng::new(seed),
        Sampling::Greedy => TokenRng::new(0),
    };
    // one step: the next id as a device tensor (the next input) and its value
    let mut step = |sequence: &mut Sequence, input: &Tensor| -> Result<(Tensor, u32)> {
        match sampling {
            Sampling::Greedy => {
                let next = model.next_token(sequence, input)?;
                let id = next.to_vec::<u32>()?[0];
                Ok((next, id))
            }
            Sampling::Sample {
                temperature, top_k, ..
            } => {
                let logits = model.last_logits(sequence, input)?.to_f32_vec()?;
                let id = sample_token(&logits, temperature, top_k, &mut rng)?;
                Ok((Tensor::from_slice(device, &[id], &[1])?, id))
            }
        }
    };

    let start = std::time::Instant::now();
    let (mut next, mut id) = step(&mut sequence, &ids)?;
    let prefill_s = start.elapsed().as_secs_f64();
    let mut out = Vec::new();

    let start = std::time::Instant::now();
    let submissions = device.stats().submissions;
    while out.len() < max_new_tokens {
        out.push(id);
        on_token(id);
        if c.eos_token_ids.contains(&id) || out.len() == max_new_tokens {
            break;
        }
        // greedy: the argmax tensor is the next step's input and never leaves the device
        (next, id) = step(&mut sequence, &next)?;
    }
    let decode_s = start.elapsed().as_secs_f64();
    let decoded = out.len().saturating_sub(1);
    Ok(Generation {
        ids: out,
        prompt_tokens: prompt.len(),
        prefill_s,
        decoded,
        decode_s,
        submissions: device.stats().submissions - submissions,
    })
}

/// What [`generate`] produced and how long it took.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The generated ids (the first comes from the prefill).
    pub ids: Vec<u32>,
    /// Prompt length.
    pub prompt_tokens: usize,
    /// Seconds for the prefill (prompt through every layer, plus the first id).
    pub prefill_s: f64,
    /// Tokens produced by decode steps (after the first).
    pub decoded: usize,
    /// Seconds for the decode steps.
    pub decode_s: f64,
    /// Queue submissions during decode (0 on the CPU device).
    pub submissions: u64,
}
