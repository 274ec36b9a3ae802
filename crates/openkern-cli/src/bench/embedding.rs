//! Embedding gather on the model shapes: `[tokens, table_rows, hidden]`, the ids spread
//! over the table. Bytes per second (ids + rows read, rows written) against the copy probe.

use super::memory::tensor;
use super::{kernel_label, measure, parse_dtype, run_cases, BenchArgs, Bound, Row};
use openkern::{ops, Device, Tensor};

/// The rows of this family for the cases `args` selects.
pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    run_cases(args, "embedding", |case| {
        let dtype = parse_dtype(&case.dtype);
        let (tokens, vocab, d) = (case.shape[0], case.shape[1], case.shape[2]);
        let table = tensor(device, &[vocab, d], dtype, 1)?;
        let ids: Vec<u32> = (0..tokens).map(|i| ((i * 7919) % vocab) as u32).collect();
        let ids = Tensor::from_slice(device, &ids, &[tokens])?;
        let bytes = (tokens * 4) as f64 + 2.0 * (tokens * d * dtype.size_in_bytes()) as f64;
        let t = measure(device, || ops::embedding(&ids, &table).map(drop))?;
        Ok(vec![Row::new(
            case,
            "embedding",
            kernel_label(device, "embedding"),
            &t,
            0.0,
            bytes,
            Bound::Memory,
        )])
    })
}
