//! Benchmarks of the last-dimension reductions: bytes read (+ the small output) per second.

use super::memory::{row, sweep, tensor};
use super::{BenchArgs, Row};
use openkern::{ops, Device};

pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let q = args.quick;
    let shapes: &[[usize; 2]] = if q {
        &[[64, 4096]]
    } else {
        &[[4096, 4096], [512, 32000]]
    };
    sweep(shapes, |m, n, dtype| {
        let x = tensor(device, &[m, n], dtype, 1)?;
        let bytes = (x.size_in_bytes() + m * 4) as f64;
        let mut rows = Vec::new();
        for op in [
            ops::Reduction::Sum,
            ops::Reduction::Max,
            ops::Reduction::ArgMax,
        ] {
            rows.push(row(
                device,
                "reduce",
                format!("{} {m}x{n}", op.name()),
                dtype,
                bytes,
                q,
                || ops::reduce(op, &x).map(drop),
            )?);
        }
        Ok(rows)
    })
}
