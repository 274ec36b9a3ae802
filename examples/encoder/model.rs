//! The BERT-style encoder of `examples/encoder`: the model code a model author copies
//! (6 layers, hidden 384, 12 heads, FFN 1536, GELU, post-LayerNorm, mean pooling), plus
//! the random checkpoint the example and `openkern bench --filter encoder` run, written
//! in Hugging Face BERT naming so the PyTorch peer (`benches/peers/torch_encoder.py`)
//! can load the very same file.

use openkern::ops::attention::{AttentionLayout, AttentionOptions};
use openkern::{ops, DType, Device, Tensor};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};

/// Encoder layers.
pub const LAYERS: usize = 6;
/// Width of the residual stream.
pub const HIDDEN: usize = 384;
/// Attention heads per layer.
pub const HEADS: usize = 12;
/// Width of one head.
pub const HEAD_DIM: usize = HIDDEN / HEADS;
/// Width of the feed-forward layer.
pub const FFN: usize = 1536;
/// Word-piece vocabulary (BERT uncased).
pub const VOCAB: usize = 30522;
/// Longest sequence the position table covers.
pub const MAX_POS: usize = 512;
/// LayerNorm epsilon (BERT).
pub const EPS: f32 = 1e-12;

/// The example's result type.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Deterministic values in [-1, 1) (a 64-bit LCG; no rand dependency needed).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// The checkpoint's tensor names and shapes, in Hugging Face BERT naming.
pub fn layout() -> Vec<(String, Vec<usize>)> {
    let mut v = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![VOCAB, HIDDEN],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![MAX_POS, HIDDEN],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![2, HIDDEN],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![HIDDEN]),
        ("embeddings.LayerNorm.bias".into(), vec![HIDDEN]),
    ];
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for (name, shape) in [
            ("attention.self.query.weight", vec![HIDDEN, HIDDEN]),
            ("attention.self.query.bias", vec![HIDDEN]),
            ("attention.self.key.weight", vec![HIDDEN, HIDDEN]),
            ("attention.self.key.bias", vec![HIDDEN]),
            ("attention.self.value.weight", vec![HIDDEN, HIDDEN]),
            ("attention.self.value.bias", vec![HIDDEN]),
            ("attention.output.dense.weight", vec![HIDDEN, HIDDEN]),
            ("attention.output.dense.bias", vec![HIDDEN]),
            ("attention.output.LayerNorm.weight", vec![HIDDEN]),
            ("attention.output.LayerNorm.bias", vec![HIDDEN]),
            ("intermediate.dense.weight", vec![FFN, HIDDEN]),
            ("intermediate.dense.bias", vec![FFN]),
            ("output.dense.weight", vec![HIDDEN, FFN]),
            ("output.dense.bias", vec![HIDDEN]),
            ("output.LayerNorm.weight", vec![HIDDEN]),
            ("output.LayerNorm.bias", vec![HIDDEN]),
        ] {
            v.push((format!("{p}.{name}"), shape));
        }
    }
    v
}

/// Writes random f32 weights (LayerNorm weights near 1), plus the padded batch of token
/// ids and lengths the example runs, so the PyTorch peer can run the very same input.
pub fn write_checkpoint(path: &std::path::Path, batch: usize, seq: usize) -> Res<Vec<u32>> {
    let mut data: Vec<(String, Vec<usize>, Vec<u8>, StDtype)> = Vec::new();
    for (i, (name, shape)) in layout().into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let scale = if name.contains("LayerNorm") {
            0.1
        } else {
            0.05
        };
        let offset = if name.ends_with("LayerNorm.weight") {
            1.0
        } else {
            0.0
        };
        let v: Vec<u8> = random(n, i as u64 + 1)
            .iter()
            .flat_map(|x| (offset + scale * x).to_le_bytes())
            .collect();
        data.push((name, shape, v, StDtype::F32));
    }
    // lengths from seq down to about a third of it: a padded batch
    let lengths: Vec<u32> = (0..batch)
        .map(|b| (seq - b * (seq - seq.div_ceil(3)) / (batch - 1).max(1)).max(1) as u32)
        .collect();
    let ids: Vec<i64> = random(batch * seq, 7)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (b, j) = (i / seq, i % seq);
            if j < lengths[b] as usize {
                ((r + 1.0) * 0.5 * (VOCAB - 1) as f32) as i64
            } else {
                0 // [PAD]
            }
        })
        .collect();
    data.push((
        "input_ids".into(),
        vec![batch, seq],
        ids.iter().flat_map(|x| x.to_le_bytes()).collect(),
        StDtype::I64,
    ));
    data.push((
        "lengths".into(),
        vec![batch],
        lengths
            .iter()
            .flat_map(|&x| (x as i64).to_le_bytes())
            .collect(),
        StDtype::I64,
    ));
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, bytes, dt)| {
            Ok((name.clone(), TensorView::new(*dt, shape.clone(), bytes)?))
        })
        .collect::<Res<_>>()?;
    safetensors::serialize_to_file(views, &None, path)?;
    Ok(lengths)
}

/// One encoder layer's weights.
pub struct Layer {
    /// Query, key and value projections stacked: weight `[3 * HIDDEN, HIDDEN]`, bias
    /// `[3 * HIDDEN]`.
    qkv: (Tensor, Tensor),
    o: (Tensor, Tensor),
    ln1: (Tensor, Tensor),
    ffn_in: (Tensor, Tensor),
    ffn_out: (Tensor, Tensor),
    ln2: (Tensor, Tensor),
}

/// The loaded model.
pub struct Encoder {
    word: Tensor,
    pos: Tensor,
    token_type: Tensor,
    ln: (Tensor, Tensor),
    layers: Vec<Layer>,
}

impl Encoder {
    /// Loads the checkpoint: matrices in the activation dtype, LayerNorm parameters and
    /// biases kept in f32 (parameters may be f32 or the activation dtype).
    pub fn load(device: &Device, st: &SafeTensors<'_>, dtype: DType) -> Res<Self> {
        let get = |name: &str, keep_f32: bool| -> Res<Tensor> {
            let view = st.tensor(name)?;
            if view.dtype() != StDtype::F32 {
                return Err(format!("{name}: expected F32 in the checkpoint").into());
            }
            let t = Tensor::from_bytes(device, view.data(), view.shape(), DType::F32)?;
            Ok(if keep_f32 { t } else { t.cast(dtype)? })
        };
        let pair = |p: &str, f32_weight: bool| -> Res<(Tensor, Tensor)> {
            Ok((
                get(&format!("{p}.weight"), f32_weight)?,
                get(&format!("{p}.bias"), true)?,
            ))
        };
        let layers = (0..LAYERS)
            .map(|l| {
                let p = format!("encoder.layer.{l}");
                let q = pair(&format!("{p}.attention.self.query"), false)?;
                let k = pair(&format!("{p}.attention.self.key"), false)?;
                let v = pair(&format!("{p}.attention.self.value"), false)?;
                Ok(Layer {
                    qkv: (
                        ops::concat(&[&q.0, &k.0, &v.0], 0)?,
                        ops::concat(&[&q.1, &k.1, &v.1], 0)?,
                    ),
                    o: pair(&format!("{p}.attention.output.dense"), false)?,
                    ln1: pair(&format!("{p}.attention.output.LayerNorm"), true)?,
                    ffn_in: pair(&format!("{p}.intermediate.dense"), false)?,
                    ffn_out: pair(&format!("{p}.output.dense"), false)?,
                    ln2: pair(&format!("{p}.output.LayerNorm"), true)?,
                })
            })
            .collect::<Res<_>>()?;
        Ok(Encoder {
            word: get("embeddings.word_embeddings.weight", false)?,
            pos: get("embeddings.position_embeddings.weight", false)?,
            token_type: get("embeddings.token_type_embeddings.weight", false)?,
            ln: pair("embeddings.LayerNorm", true)?,
            layers,
        })
    }

    /// Sentence embeddings `[batch, HIDDEN]` (f32) of a padded batch of ids `[batch, seq]`.
    pub fn forward(&self, ids: &Tensor, lengths: &[u32]) -> openkern::Result<Tensor> {
        let device = ids.device();
        let (batch, seq) = (ids.shape()[0], ids.shape()[1]);
        let dtype = self.word.dtype();
        // embeddings: word + position + token type 0, then LayerNorm
        let positions = Tensor::arange(device, 0.0, seq as f64, 1.0, DType::U32)?;
        let x = ops::embedding(&ids.reshape(&[batch * seq])?, &self.word)?
            .reshape(&[batch, seq, HIDDEN])?;
        let x = ops::add(&x, &ops::embedding(&positions, &self.pos)?)?;
        let type0 = Tensor::from_slice(device, &[0u32], &[1])?;
        let x = ops::add(
            &x,
            &ops::embedding(&type0, &self.token_type)?.reshape(&[HIDDEN])?,
        )?;
        let mut x = ops::layer_norm(&x, &self.ln.0, &self.ln.1, EPS)?;
        // padding mask: 0 for real tokens, -inf for padding, broadcast over heads and rows
        let mask = ops::additive_mask_from_lengths(device, lengths, seq, DType::F32)?
            .reshape(&[batch, 1, 1, seq])?;
        let attention = AttentionOptions {
            // scale: None is 1/sqrt(HEAD_DIM)
            mask: Some(&mask),
            layout: AttentionLayout::SeqFirst,
            ..Default::default()
        };
        for l in &self.layers {
            // one projection for q, k and v, then one copy pass per part
            let qkv = ops::linear(&x, &l.qkv.0, Some(&l.qkv.1), None)?;
            let parts = ops::chunk(&qkv, 3, 2)?;
            // [batch, seq, HIDDEN] -> [batch, seq, HEADS, HEAD_DIM]: a reshape, no copy
            let heads = |t: &Tensor| t.reshape(&[batch, seq, HEADS, HEAD_DIM]);
            let ctx = ops::attention(
                &heads(&parts[0])?,
                &heads(&parts[1])?,
                &heads(&parts[2])?,
                &attention,
            )?
            .reshape(&[batch, seq, HIDDEN])?;
            let attn = ops::linear(&ctx, &l.o.0, Some(&l.o.1), None)?;
            x = ops::add_layer_norm_post(&attn, &x, &l.ln1.0, &l.ln1.1, EPS)?;
            let h = ops::linear(
                &x,
                &l.ffn_in.0,
                Some(&l.ffn_in.1),
                Some(ops::Activation::Gelu),
            )?;
            let h = ops::linear(&h, &l.ffn_out.0, Some(&l.ffn_out.1), None)?;
            x = ops::add_layer_norm_post(&h, &x, &l.ln2.0, &l.ln2.1, EPS)?;
        }
        // mean pooling over the real tokens: zero the padding, sum over seq, divide
        let keep: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..seq).map(move |j| if j < n as usize { 1.0 } else { 0.0 }))
            .collect();
        let keep = Tensor::from_f32(device, &keep, &[batch, seq, 1], dtype)?;
        let summed = ops::sum_dim(&ops::mul(&x, &keep)?.cast(DType::F32)?, 1, false)?;
        let counts: Vec<f32> = lengths.iter().map(|&n| n as f32).collect();
        let counts = Tensor::from_slice(device, &counts, &[batch, 1])?;
        ops::div(&summed, &counts)
    }
}
