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
use super::shapes::Tier;
use super::{measure, skip, BenchArgs, Bound, Row, Sampled};
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

/// PyTorch's forward on the same checkpoint in a child process that times a window of
/// N forwards each time it is asked (`torch_encoder.py --serve`); killed on drop.
struct TorchPeer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl TorchPeer {
    /// The peer loaded and warmed up on `file` in `dtype`, or None (after saying why).
    fn start(file: &std::path::Path, dtype: DType) -> Option<TorchPeer> {
        use std::process::{Command, Stdio};
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../benches/peers/torch_encoder.py"
        );
        let child = Command::new("python3")
            .arg(script)
            .arg("--file")
            .arg(file)
            .args(["--dtype", dtype.name(), "--serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(_) => {
                skip("encoder torch peer: python3 with torch is needed (pip install torch)");
                return None;
            }
        };
        let (stdin, stdout) = (child.stdin.take()?, child.stdout.take()?);
        let mut peer = TorchPeer {
            child,
            stdin,
            stdout: std::io::BufReader::new(stdout),
        };
        if peer.line().as_deref() != Some("ready") {
            skip("encoder torch peer: python3 with torch is needed (pip install torch)");
            return None;
        }
        Some(peer)
    }

    /// The peer's next output line, or None once it has exited.
    fn line(&mut self) -> Option<String> {
        use std::io::BufRead;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim().to_string()),
            _ => None,
        }
    }

    /// Seconds per forward over a window of `iters` forwards.
    fn window(&mut self, iters: usize) -> Option<f64> {
        use std::io::Write;
        writeln!(self.stdin, "{iters}").ok()?;
        self.stdin.flush().ok()?;
        self.line()?.parse().ok()
    }
}

impl Drop for TorchPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our forward `f` and the peer's in alternating windows of the same number of
/// forwards (about 0.1 s of ours each): the tier's sample count of rounds, and more for
/// a slow forward, up to about a second of ours in all (one 4×128 forward varied
/// 66–109 ms within a process here, and a median of five such windows swung the ratio
/// by ±15 %). Returns our samples and the peer's median seconds per forward (None if it
/// stopped answering).
fn alternating(
    device: &Device,
    mut f: impl FnMut() -> openkern::Result<()>,
    peer: &mut TorchPeer,
) -> openkern::Result<(Sampled, Option<f64>)> {
    f()?;
    device.sync()?;
    let first = device.time(1, &mut f)?;
    let tier = *super::TIER.get().unwrap_or(&Tier::Default);
    let iters = (0.1 / first.seconds.max(1e-7)).clamp(1.0, 50.0) as usize;
    let window = iters as f64 * first.seconds;
    let rounds = match tier {
        Tier::Quick => 3,
        Tier::Default => 5,
        Tier::Full => 7,
    };
    let rounds = if tier == Tier::Quick {
        rounds
    } else {
        rounds.max(((1.0 / window).ceil() as usize).min(15))
    };
    let (mut ours, mut theirs) = (Vec::new(), Some(Vec::new()));
    for _ in 0..rounds {
        ours.push(device.time(iters, &mut f)?.seconds);
        theirs = theirs.and_then(|mut v: Vec<f64>| {
            v.push(peer.window(iters)?);
            Some(v)
        });
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ours_median = median(&mut ours);
    Ok((
        Sampled {
            median: ours_median,
            min: ours[0],
            max: ours[ours.len() - 1],
            samples: ours.len(),
            source: first.source,
        },
        theirs.map(|mut v| median(&mut v)),
    ))
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
                    let (t, peer) = match cpu.then(|| TorchPeer::start(&file, dtype)).flatten() {
                        Some(mut torch) => {
                            let (t, seconds) = alternating(device, forward, &mut torch)?;
                            if seconds.is_none() {
                                skip(&format!("encoder torch peer: stopped answering ({label})"));
                            }
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
