//! Benchmarks of the layout copies: bytes read + written per second.

use super::memory::{or_skip, row, tensor};
use super::{BenchArgs, Row};
use openkern::{ops, DType, Device};

pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let q = args.quick;
    // [seq, heads, head_dim] -> [heads, seq, head_dim], the attention transpose
    let shape: [usize; 3] = if q { [64, 32, 128] } else { [4096, 32, 128] };
    let mut out = Vec::new();
    for dtype in [DType::F32, DType::F16] {
        let case = format!("{shape:?}");
        out.extend(or_skip(
            &case,
            (|| {
                let x = tensor(device, &shape, dtype, 1)?;
                let y = tensor(device, &shape, dtype, 2)?;
                let s = x.size_in_bytes() as f64;
                Ok(vec![
                    row(
                        device,
                        "layout",
                        format!("permute {shape:?} [1,0,2]"),
                        dtype,
                        2.0 * s,
                        q,
                        || ops::permute(&x, &[1, 0, 2]).map(drop),
                    )?,
                    row(
                        device,
                        "layout",
                        format!("concat 2x{shape:?} dim 2"),
                        dtype,
                        4.0 * s,
                        q,
                        || ops::concat(&[&x, &y], 2).map(drop),
                    )?,
                ])
            })(),
        )?);
    }
    Ok(out)
}
