//! Softmax on the model shapes: attention scores `[heads, q_len, kv_len]` (scaled by
//! 1/√head_dim, causal), prefill (q_len = kv_len = prompt) and decode (one query against
//! the KV cache), and the sampling softmax over the vocabulary `[1, vocab]`. Bytes read +
//! written per second against the copy probe.

use super::memory::tensor;
use super::{kernel_label, measure, parse_dtype, run_cases, BenchArgs, Bound, Row};
use openkern::ops::{self, SoftmaxOptions};
use openkern::Device;

/// The rows of this family for the cases `args` selects.
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    run_cases(args, "softmax", |case| {
        let dtype = parse_dtype(&case.dtype);
        let x = tensor(device, &case.shape, dtype, 1)?;
        let s = x.size_in_bytes() as f64;
        let o = if case.op == "softmax.causal" {
            SoftmaxOptions {
                scale: 0.088,
                causal: true,
                mask: None,
            }
        } else {
            SoftmaxOptions::default()
        };
        let t = measure(device, || ops::softmax_with(&x, &o).map(drop))?;
        let e = x.len() as f64;
        let mut row = Row::new(
            case,
            "softmax",
            kernel_label(device, "softmax"),
            &t,
            5.0 * e,
            2.0 * s,
            Bound::Memory,
        );
        super::burn::attach(device, args, case, &mut row, || {
            ops::softmax_with(&x, &o).map(drop)
        })?;
        Ok(vec![row])
    })
}
