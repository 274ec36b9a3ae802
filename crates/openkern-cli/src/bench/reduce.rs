//! Greedy sampling's argmax over the logits `[1, vocab]`: bytes read per second against
//! the copy probe.

use super::memory::tensor;
use super::{kernel_label, measure, parse_dtype, run_cases, BenchArgs, Bound, Row};
use openkern::{ops, Device};

/// The rows of this family for the cases `args` selects.
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    run_cases(args, "reduce", |case| {
        let dtype = parse_dtype(&case.dtype);
        let x = tensor(device, &case.shape, dtype, 1)?;
        let bytes = (x.size_in_bytes() + case.shape[0] * 4) as f64;
        let t = measure(device, || ops::argmax(&x).map(drop))?;
        Ok(vec![Row::new(
            case,
            "reduce",
            kernel_label(device, "argmax"),
            &t,
            x.len() as f64,
            bytes,
            Bound::Memory,
        )])
    })
}
