//! Every elementwise, activation, unary, norm, RoPE and cast op on one large tensor
//! (`[4096, 4096]`; RoPE as `[4096 tokens, 32 heads, 128]`), in f32 and f16, with
//! `--full` or when `--filter` names `pointwise` (`[1024, 4096]` in f32 otherwise, so
//! the default run stays short): the minimal
//! bytes read + written per second against the copy probe. These are the ops a model
//! runs between its matmuls, so on the CPU backend they should move memory at the copy
//! probe's pace, whatever arithmetic (erf, exp, 16-bit widening) they do per element.
//!
//! On the CPU backend each row is timed back to back with PyTorch doing the same
//! computation (benches/peers/torch_pointwise.py, started once and fed one case at a
//! time), so the ratio in the row's last column comes from the same minute of the
//! machine. Without python3 and torch the rows run alone, with a message.

use super::memory::tensor;
use super::peer::PeerProcess;
use super::{kernel_label, measure, parse_dtype, run_list, BenchArgs, Bound, Row};
use openkern::ops::{self, RopeLayout, RopeOptions};
use openkern::{DType, Device, DeviceType, Tensor};

/// The ops of the family, in run order.
pub const OPS: &[&str] = &[
    "add",
    "mul",
    "add.bias_row",
    "mul_scalar",
    "gelu",
    "gelu_tanh",
    "silu",
    "relu",
    "swiglu",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "neg",
    "abs",
    "tanh",
    "sigmoid",
    "clamp",
    "rms_norm",
    "layer_norm",
    "add_rms_norm",
    "l2_normalize",
    "rope",
    "cast",
];

/// The library's op families (`openkern::ops::FAMILIES`) whose ops have rows here.
#[cfg_attr(not(test), allow(dead_code))] // read by the family-coverage test
pub const LIBRARY_FAMILIES: &[&str] =
    &["elementwise", "activation", "unary", "norm", "rope", "cast"];

/// Head size of the RoPE row: the last dimension is split into heads of this size.
const ROPE_HEAD_DIM: usize = 128;

/// Tensors read and written, in units of the tensor's size (the cast row is special).
fn passes(op: &str) -> f64 {
    match op {
        "add" | "mul" | "swiglu" => 3.0,
        "add_rms_norm" => 4.0,
        _ => 2.0,
    }
}

/// Times `op` on `x` (and a second operand where it takes one); returns the timing.
fn time_op(
    device: &Device,
    op: &str,
    x: &Tensor,
    seed2: &Tensor,
) -> openkern::Result<super::Sampled> {
    let dtype = x.dtype();
    let cols = *x.shape().last().unwrap_or(&1);
    let w = Tensor::ones(device, &[cols], dtype)?;
    let bias = tensor(device, &[cols], dtype, 3)?;
    let eps = 1e-5;
    match op {
        "add" => measure(device, || ops::add(x, seed2).map(drop)),
        "mul" => measure(device, || ops::mul(x, seed2).map(drop)),
        "add.bias_row" => measure(device, || ops::add(x, &bias).map(drop)),
        "mul_scalar" => measure(device, || ops::mul_scalar(x, 0.5).map(drop)),
        "gelu" => measure(device, || ops::gelu(x).map(drop)),
        "gelu_tanh" => measure(device, || ops::gelu_tanh(x).map(drop)),
        "silu" => measure(device, || ops::silu(x).map(drop)),
        "relu" => measure(device, || ops::relu(x).map(drop)),
        "swiglu" => measure(device, || ops::swiglu(x, seed2).map(drop)),
        "exp" => measure(device, || ops::exp(x).map(drop)),
        "log" => measure(device, || ops::log(x).map(drop)),
        "sqrt" => measure(device, || ops::sqrt(x).map(drop)),
        "rsqrt" => measure(device, || ops::rsqrt(x).map(drop)),
        "neg" => measure(device, || ops::neg(x).map(drop)),
        "abs" => measure(device, || ops::abs(x).map(drop)),
        "tanh" => measure(device, || ops::tanh(x).map(drop)),
        "sigmoid" => measure(device, || ops::sigmoid(x).map(drop)),
        "clamp" => measure(device, || ops::clamp(x, -1.0, 1.0).map(drop)),
        "rms_norm" => measure(device, || ops::rms_norm(x, &w, eps).map(drop)),
        "layer_norm" => measure(device, || ops::layer_norm(x, &w, &bias, eps).map(drop)),
        "add_rms_norm" => measure(device, || ops::add_rms_norm(x, seed2, &w, eps).map(drop)),
        "l2_normalize" => measure(device, || ops::l2_normalize(x, eps).map(drop)),
        "rope" => {
            let rows = x.shape()[0];
            let heads = x.len() / rows / ROPE_HEAD_DIM;
            let q = x.reshape(&[rows, heads, ROPE_HEAD_DIM])?;
            let o = RopeOptions {
                theta: 500_000.0,
                layout: RopeLayout::Halves,
                ..Default::default()
            };
            measure(device, || ops::rope(&q, &o).map(drop))
        }
        "cast" => {
            let to = if dtype == DType::F32 {
                DType::F16
            } else {
                DType::F32
            };
            measure(device, || x.cast(to).map(drop))
        }
        other => unreachable!("{other} is not in OPS"),
    }
}

/// The rows of this family for the cases `args` selects.
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let mut cases = args.cases("pointwise");
    let named = args.names("pointwise");
    if named && !args.full {
        // the family asked for by name: the full tier's 4096 × 4096, f32 and f16
        cases = super::shapes::cases(super::Tier::Full)
            .into_iter()
            .filter(|c| c.family == "pointwise")
            .collect();
    }
    let cpu = device.info().device_type == DeviceType::Cpu;
    let mut peer = if cpu && !cases.is_empty() {
        // torch's OpenMP workers otherwise spin after each answer, on the cores the next
        // openkern row is timed on (they slowed rows up to 2.4x, a 300 ms pause
        // notwithstanding); passive waiting costs torch a wake-up per op, microseconds
        // against these milliseconds
        PeerProcess::start("torch_pointwise.py", &[], &[("OMP_WAIT_POLICY", "PASSIVE")])
    } else {
        None
    };
    let mut inputs: Option<(Vec<usize>, DType, Tensor, Tensor)> = None;
    run_list(cases.clone(), |case| {
        let dtype = parse_dtype(&case.dtype);
        // one pair of inputs per shape and dtype, shared by that dtype's rows
        if !matches!(&inputs, Some((s, d, _, _)) if *s == case.shape && *d == dtype) {
            inputs = None;
            let a = tensor(device, &case.shape, dtype, 1)?;
            let b = tensor(device, &case.shape, dtype, 2)?;
            inputs = Some((case.shape.clone(), dtype, a, b));
        }
        let (_, _, x, y) = inputs.as_ref().expect("set above");
        if peer.is_some() {
            // the peer's OpenMP workers spin for a while after each answer; let them
            // settle so they do not share the cores with this row
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        // the copy probe again, right before the row: this host's bandwidth drifts by
        // up to 2x within a run, and the row is compared with the machine of its minute
        let local_copy = if cpu {
            Some(openkern::gpu::probe::copy_bandwidth(device)?.per_second)
        } else {
            None
        };
        let op = case.op.as_str();
        let t = time_op(device, op, x, y)?;
        let e = x.len() as f64;
        let bytes = if op == "cast" {
            e * (dtype.size_in_bytes() + if dtype == DType::F32 { 2 } else { 4 }) as f64
        } else {
            passes(op) * x.size_in_bytes() as f64
        };
        let mut row = Row::new(
            case,
            "pointwise",
            kernel_label(device, op),
            &t,
            e,
            bytes,
            Bound::Memory,
        );
        row.local_limit = local_copy;
        let (rows, cols) = (case.shape[0], case.shape[1]);
        row.peer = peer
            .as_mut()
            .and_then(|p| p.seconds(&format!("{op} {} {rows} {cols}", dtype.name())))
            .map(|s| ("torch", bytes / s));
        Ok(vec![row])
    })
}
