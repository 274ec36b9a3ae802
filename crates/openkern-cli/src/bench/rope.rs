//! RoPE on the model shapes, `[tokens, heads, head_dim]` for the queries and
//! `[tokens, kv_heads, head_dim]` for the keys, θ = 500 000 (Llama 3), the Hugging Face
//! (halves) pair layout; decode rotates one token at position 4000. Bytes read +
//! written per second against the copy probe.

use super::memory::tensor;
use super::{kernel_label, measure, parse_dtype, run_cases, BenchArgs, Bound, Row};
use openkern::ops::{self, RopeLayout, RopeOptions};
use openkern::Device;

/// The rows of this family for the cases `args` selects.
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    run_cases(args, "rope", |case| {
        let dtype = parse_dtype(&case.dtype);
        let x = tensor(device, &case.shape, dtype, 1)?;
        let s = x.size_in_bytes() as f64;
        let o = RopeOptions {
            theta: 500_000.0,
            layout: RopeLayout::Halves,
            offset: if case.phase == "decode" { 4000 } else { 0 },
            ..Default::default()
        };
        let t = measure(device, || ops::rope(&x, &o).map(drop))?;
        let e = x.len() as f64;
        Ok(vec![Row::new(
            case,
            "rope",
            kernel_label(device, "rope"),
            &t,
            3.0 * e,
            2.0 * s,
            Bound::Memory,
        )])
    })
}
