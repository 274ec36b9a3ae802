//! The suite's shapes, defined once: three model classes (1B, 8B, 70B), the prefill and
//! decode cases each op family sees in them, and the square GEMM sweep. The families
//! run these cases; `openkern bench --list-shapes FILE` writes them for the peers in
//! `benches/peers/`, so every implementation times exactly the same work.
//!
//! The meaning of `shape` per op is documented in `benches/README.md`.

use serde::{Deserialize, Serialize};

/// One model class whose layer the suite mirrors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Model {
    /// Short name used in rows and by `--filter`, e.g. `8b`.
    pub name: String,
    /// The public checkpoint the dimensions come from.
    pub like: String,
    /// Model width.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// Per-head dimension.
    pub head_dim: usize,
    /// Feed-forward (SwiGLU) width.
    pub ffn: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

/// The three model classes.
pub fn models() -> Vec<Model> {
    let m = |name: &str, like: &str, hidden, heads, kv_heads, head_dim, ffn| Model {
        name: name.into(),
        like: like.into(),
        hidden,
        heads,
        kv_heads,
        head_dim,
        ffn,
        vocab: 128_256,
    };
    vec![
        m("1b", "Llama-3.2-1B", 2048, 32, 8, 64, 8192),
        m("8b", "Llama-3.1-8B", 4096, 32, 8, 128, 14336),
        m("70b", "Llama-3.1-70B", 8192, 64, 8, 128, 28672),
    ]
}

/// How much of the suite runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The 1B model, 16-token prefill, f32: well under a minute on a software adapter.
    Quick,
    /// All three models, 16-token prefill, f32 (f16 too in the GEMM sweep): the README's
    /// main command, about two minutes on a software adapter.
    Default,
    /// Prefill of 512 tokens, f32 and f16 everywhere, the large GEMMs: for real GPUs.
    Full,
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tier::Quick => "quick",
            Tier::Default => "default",
            Tier::Full => "full",
        })
    }
}

/// One benchmark case: what a peer needs to time the same work.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Case {
    /// Family: `linear`, `gemv`, `gemm`, `softmax`, `norm`, `activation`, `rope`,
    /// `embedding`, `elementwise`, `reduce`, `attention`.
    pub family: String,
    /// The op within the family, e.g. `linear.ffn_up`, `rms_norm`, `softmax.causal`.
    pub op: String,
    /// Model class (`1b`, `8b`, `70b`), empty for the square GEMM sweep.
    pub model: String,
    /// `prefill`, `decode`, or empty.
    pub phase: String,
    /// Dimensions; their meaning per op is in benches/README.md.
    pub shape: Vec<usize>,
    /// `f32` or `f16`.
    pub dtype: String,
}

impl Case {
    /// The key rows are matched by in `--compare`.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{:?}|{}",
            self.family, self.op, self.model, self.phase, self.shape, self.dtype
        )
    }

    /// Whether `--filter f` selects this case (family, op, model or phase contains it).
    pub fn matches(&self, filter: Option<&str>) -> bool {
        filter.is_none_or(|f| {
            f.split(',').any(|f| {
                self.family.contains(f) || self.op.contains(f) || self.model == f || self.phase == f
            })
        })
    }
}

/// Tokens in the prefill rows.
pub fn prefill_tokens(tier: Tier) -> usize {
    match tier {
        Tier::Quick => 16,
        Tier::Default => 16,
        Tier::Full => 512,
    }
}

/// KV-cache length the decode rows attend over.
pub fn decode_context(tier: Tier) -> usize {
    match tier {
        Tier::Quick => 1024,
        _ => 4096,
    }
}

/// Rows of the embedding table actually allocated: gather cost does not depend on the
/// rows never read, and a full 128k x 8192 f32 table is 4 GiB, and 4096 rows of 8192 f32 fit the
/// 128 MiB binding many adapters allow.
pub const EMBEDDING_ROWS: usize = 4096;

/// Every case of `tier`, in run order.
pub fn cases(tier: Tier) -> Vec<Case> {
    let mut out = Vec::new();
    let dtypes: &[&str] = match tier {
        Tier::Full => &["f32", "f16"],
        _ => &["f32"],
    };
    let models: Vec<Model> = match tier {
        Tier::Quick => models().into_iter().take(1).collect(),
        _ => models(),
    };
    let mut push = |family: &str, op: &str, model: &str, phase: &str, shape: Vec<usize>| {
        for dt in dtypes {
            out.push(Case {
                family: family.into(),
                op: op.into(),
                model: model.into(),
                phase: phase.into(),
                shape: shape.clone(),
                dtype: (*dt).into(),
            });
        }
    };
    let t = prefill_tokens(tier);
    let ctx = decode_context(tier);
    for m in &models {
        let name = m.name.as_str();
        let q = m.heads * m.head_dim;
        let kv = m.kv_heads * m.head_dim;
        // [out, in] weights of one layer (gate and up have the same shape: one row).
        let proj = [
            ("qkv", q + 2 * kv, m.hidden),
            ("o", m.hidden, q),
            ("ffn_up", m.ffn, m.hidden),
            ("ffn_down", m.hidden, m.ffn),
        ];
        for (what, n, k) in proj {
            push(
                "linear",
                &format!("linear.{what}"),
                name,
                "prefill",
                vec![t, n, k],
            );
            push(
                "gemv",
                &format!("gemv.{what}"),
                name,
                "decode",
                vec![1, n, k],
            );
        }
        for (phase, rows) in [("prefill", t), ("decode", 1)] {
            push("norm", "rms_norm", name, phase, vec![rows, m.hidden]);
            push("norm", "add_rms_norm", name, phase, vec![rows, m.hidden]);
            push("activation", "swiglu", name, phase, vec![rows, m.ffn]);
            push("activation", "silu", name, phase, vec![rows, m.ffn]);
            push("elementwise", "add", name, phase, vec![rows, m.hidden]);
            push(
                "rope",
                "rope.q",
                name,
                phase,
                vec![rows, m.heads, m.head_dim],
            );
            push(
                "rope",
                "rope.k",
                name,
                phase,
                vec![rows, m.kv_heads, m.head_dim],
            );
            push(
                "embedding",
                "embedding",
                name,
                phase,
                vec![rows, EMBEDDING_ROWS, m.hidden],
            );
        }
        // attention scores: [heads, q_len, kv_len], scaled, causal
        push(
            "softmax",
            "softmax.causal",
            name,
            "prefill",
            vec![m.heads, t, t],
        );
        push(
            "softmax",
            "softmax.causal",
            name,
            "decode",
            vec![m.heads, 1, ctx],
        );
        // fused attention, [heads, kv_heads, q_len, kv_len, head_dim]: causal prefill of
        // the prompt, and one decode token against the cache
        push(
            "attention",
            "attention",
            name,
            "prefill",
            vec![m.heads, m.kv_heads, t, t, m.head_dim],
        );
        push(
            "attention",
            "attention",
            name,
            "decode",
            vec![m.heads, m.kv_heads, 1, ctx, m.head_dim],
        );
        // sampling: the logits of the last token
        push("softmax", "softmax", name, "decode", vec![1, m.vocab]);
        push("reduce", "argmax", name, "decode", vec![1, m.vocab]);
    }
    let (squares, sq_dtypes): (&[usize], &[&str]) = match tier {
        Tier::Quick => (&[256], &["f32"]),
        Tier::Default => (&[256, 512], &["f32", "f16"]),
        Tier::Full => (&[256, 512, 1024, 2048, 4096, 8192], &["f32", "f16"]),
    };
    for &n in squares {
        for dt in sq_dtypes {
            out.push(Case {
                family: "gemm".into(),
                op: "matmul".into(),
                model: String::new(),
                phase: String::new(),
                shape: vec![n, n, n],
                dtype: (*dt).into(),
            });
        }
    }
    // the ops between the matmuls on one large tensor: 4096 × 4096 in f32 and f16 (the
    // CPU targets' shape) in the full tier and whenever `--filter` names the family (see
    // bench::pointwise), a quarter of it in f32 otherwise, to keep the default run short
    let (side, pw_dtypes): (&[usize], &[&str]) = match tier {
        Tier::Full => (&[4096, 4096], &["f32", "f16"]),
        _ => (&[1024, 4096], &["f32"]),
    };
    for dt in pw_dtypes {
        for op in crate::bench::pointwise::OPS {
            out.push(Case {
                family: "pointwise".into(),
                op: (*op).into(),
                model: String::new(),
                phase: String::new(),
                shape: side.to_vec(),
                dtype: (*dt).into(),
            });
        }
    }
    out
}

/// The file `--list-shapes` writes.
#[derive(Serialize, Deserialize)]
pub struct ShapeList {
    /// Always `openkern-shapes`.
    pub format: String,
    /// Format version; bumped when a field changes meaning.
    pub version: u32,
    /// The tier the cases are for.
    pub tier: Tier,
    /// The model classes.
    pub models: Vec<Model>,
    /// The cases, in run order.
    pub cases: Vec<Case>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tier_covers_every_family_and_model() {
        for tier in [Tier::Quick, Tier::Default, Tier::Full] {
            let cases = cases(tier);
            for fam in [
                "linear",
                "gemv",
                "gemm",
                "softmax",
                "norm",
                "activation",
                "rope",
                "embedding",
                "attention",
                "pointwise",
            ] {
                assert!(cases.iter().any(|c| c.family == fam), "{tier} lacks {fam}");
            }
            let keys: std::collections::HashSet<_> = cases.iter().map(Case::key).collect();
            assert_eq!(keys.len(), cases.len(), "{tier}: duplicate keys");
        }
        assert!(cases(Tier::Default).iter().any(|c| c.model == "70b"));
        // attention rows for every model class, prefill and decode
        for m in ["1b", "8b", "70b"] {
            for phase in ["prefill", "decode"] {
                assert!(
                    cases(Tier::Default)
                        .iter()
                        .any(|c| c.family == "attention" && c.model == m && c.phase == phase),
                    "no {phase} attention row for {m}"
                );
            }
        }
    }
}
