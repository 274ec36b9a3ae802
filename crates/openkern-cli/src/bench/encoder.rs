//! End-to-end rows: the BERT-style sentence encoder of `examples/encoder/model.rs` (the
//! same module the example runs: 6 layers, hidden 384, 12 heads, FFN 1536, GELU,
//! post-LayerNorm, mean pooling) on random weights, one padded batch of 4 sequences of
//! 18 and of 128 tokens, f32 and f16. Each row is one whole forward (embeddings to pooled
//! sentence embeddings, read back), as FLOP/s of its matmuls and attention against the
//! FMA probe, with sequences/s in the kernel column.
//!
//! On the CPU device, PyTorch runs the same computation on the same checkpoint file
//! (benches/peers/torch_encoder.py `--serve`, one process per row) in windows that
//! alternate with ours — ours, theirs, ours, … — and the ratio of the two medians is
//! printed beside the row. This host's speed drifted up to 2× between minutes, and
//! torch timed after the row could land in another phase (one row read 0.93× against
//! 1.11–1.28× in the runs around it); alternating, both sides see the same phases.
//! Without torch the rows run alone, with a message.
//!
//! Both lengths and both dtypes run with `--full` or when `--filter` names `encoder`
//! (without `--quick`); otherwise the 18-token batch in f32, so the default run stays
//! short.

#[allow(dead_code)]
#[path = "../../../../examples/encoder/model.rs"]
mod model;

use super::memory::or_skip;
use super::peer::{alternating, PeerProcess};
use super::{measure, skip, BenchArgs, Bound, Row};
use model::{Encoder, FFN, HIDDEN, LAYERS};
use openkern::{DType, Device, DeviceType, Tensor};
use safetensors::SafeTensors;

/// Sequences per batch.
const BATCH: usize = 4;

/// FLOPs of one forward over `batch × seq` tokens: the four projections and the FFN
/// (2 per weight per token) and attention's two products (2·seq·HIDDEN each per token;
/// padding is computed too, as in PyTorch's eager path).
fn forward_flops(batch: usize, seq: usize) -> f64 {
    let tokens = (batch * seq) as f64;
    let per_token =
        2.0 * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN) as f64 + 4.0 * (seq * HIDDEN) as f64;
    LAYERS as f64 * per_token * tokens
}

/// A failure outside the library (file, checkpoint) as the bench's error type.
fn internal(message: String) -> openkern::Error {
    openkern::Error::Internal { message }
}

/// The case key: shape `[batch, seq]`.
fn case(seq: usize, dtype: DType) -> super::shapes::Case {
    super::shapes::Case {
        family: "encoder".into(),
        op: "encoder.forward".into(),
        model: "minilm".into(),
        phase: String::new(),
        shape: vec![BATCH, seq],
        dtype: dtype.name().into(),
    }
}

/// The encoder rows (see the module docs for the tiers).
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let big = args.full || args.names("encoder");
    let (seqs, dtypes): (&[usize], &[DType]) = if big {
        (&[18, 128], &[DType::F32, DType::F16])
    } else {
        (&[18], &[DType::F32])
    };
    let cpu = device.info().device_type == DeviceType::Cpu;
    let mut out = Vec::new();
    for &seq in seqs {
        let file = std::env::temp_dir().join(format!(
            "openkern_bench_encoder_{}_{BATCH}x{seq}.safetensors",
            std::process::id()
        ));
        let written = model::write_checkpoint(&file, BATCH, seq)
            .map_err(|e| internal(format!("writing {}: {e}", file.display())));
        let lengths = match written {
            Ok(l) => l,
            Err(e) => {
                skip(&format!("encoder {BATCH}x{seq}: {e}"));
                continue;
            }
        };
        for &dtype in dtypes {
            let label = format!("encoder {BATCH}x{seq} {dtype}");
            out.extend(or_skip(
                &label,
                (|| {
                    let bytes = std::fs::read(&file)
                        .map_err(|e| internal(format!("{}: {e}", file.display())))?;
                    let st = SafeTensors::deserialize(&bytes)
                        .map_err(|e| internal(format!("{}: {e}", file.display())))?;
                    let model = Encoder::load(device, &st, dtype)
                        .map_err(|e| internal(format!("loading the encoder: {e}")))?;
                    let ids: Vec<u32> = st
                        .tensor("input_ids")
                        .map_err(|e| internal(e.to_string()))?
                        .data()
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as u32)
                        .collect();
                    let ids = Tensor::from_slice(device, &ids, &[BATCH, seq])?;
                    let forward = || model.forward(&ids, &lengths)?.to_vec::<f32>().map(drop);
                    let flops = forward_flops(BATCH, seq);
                    // `torch_encoder.py --serve`: loaded once, a window of N forwards per
                    // request, alternating with ours for about a second of ours (one
                    // 4×128 forward varied 66–109 ms within a process here, and the
                    // median of five windows swung the ratio by ±15 %)
                    let start = || {
                        let args = [
                            "--file".as_ref(),
                            file.as_os_str(),
                            "--dtype".as_ref(),
                            dtype.name().as_ref(),
                            "--serve".as_ref(),
                        ];
                        PeerProcess::start("torch_encoder.py", &args, &[])
                    };
                    let (t, peer) = match cpu.then(start).flatten() {
                        Some(mut torch) => {
                            let (t, seconds) = alternating(device, forward, 0.1, 1.0, |n| {
                                torch.seconds(&n.to_string())
                            })?;
                            (t, seconds.map(|s| ("torch", flops / s)))
                        }
                        None => (measure(device, forward)?, None),
                    };
                    drop(model);
                    device.trim_pool();
                    let mut row = Row::new(
                        &case(seq, dtype),
                        "encoder",
                        format!("{:.1} seq/s", BATCH as f64 / t.median),
                        &t,
                        flops,
                        0.0,
                        Bound::Compute,
                    );
                    row.case = format!("forward {BATCH}x{seq}");
                    row.peer = peer;
                    Ok(vec![row])
                })(),
            )?);
        }
        let _ = std::fs::remove_file(&file);
    }
    Ok(out)
}
