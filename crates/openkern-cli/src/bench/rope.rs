//! Benchmarks of RoPE: bytes read + written per second, prefill and decode shapes.

use super::memory::{or_skip, row, tensor};
use super::{BenchArgs, Row};
use openkern::ops::{self, RopeLayout, RopeOptions};
use openkern::{DType, Device};

pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let q = args.quick;
    // [seq, heads, head_dim]
    let shapes: &[[usize; 3]] = if q {
        &[[64, 32, 128]]
    } else {
        &[[4096, 32, 128], [1, 32, 128]]
    };
    let mut out = Vec::new();
    for &shape in shapes {
        for dtype in [DType::F32, DType::F16] {
            let case = format!("rope {shape:?}");
            out.extend(or_skip(
                &case,
                (|| {
                    let x = tensor(device, &shape, dtype, 1)?;
                    let s = x.size_in_bytes() as f64;
                    let mut rows = Vec::new();
                    for layout in [RopeLayout::Halves, RopeLayout::Interleaved] {
                        let o = RopeOptions {
                            layout,
                            offset: if shape[0] == 1 { 4000 } else { 0 },
                            ..Default::default()
                        };
                        rows.push(row(
                            device,
                            "rope",
                            format!("{case} {layout:?}"),
                            dtype,
                            2.0 * s,
                            q,
                            || ops::rope(&x, &o).map(drop),
                        )?);
                    }
                    Ok(rows)
                })(),
            )?);
        }
    }
    Ok(out)
}
