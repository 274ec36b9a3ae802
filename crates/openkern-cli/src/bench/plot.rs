//! `--plot FILE.svg`: the roofline of a run. Achieved GFLOP/s against arithmetic
//! intensity (FLOP per byte moved), log-log, one point per row coloured by family, with
//! the two roofs measured in the same run: copy bandwidth × intensity and FMA throughput.
//! Rows that do no arithmetic (embedding gather) have no place on it and are left out.

use super::report::Run;
use plotters::prelude::*;
use std::path::Path;

const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn err(path: &Path, e: impl std::fmt::Display) -> openkern::Error {
    openkern::Error::Io(std::io::Error::other(format!("{}: {e}", path.display())))
}

/// Draws `run`'s roofline to `path` (SVG).
pub fn roofline(path: &Path, run: &Run) -> openkern::Result<()> {
    let bw = run.probes.copy.as_ref().map_or(0.0, |p| p.per_second);
    let peak = run.probes.fma.as_ref().map_or(0.0, |p| p.per_second);
    let points: Vec<(&str, f64, f64)> = run
        .rows
        .iter()
        .filter(|r| r.flops > 0.0 && r.bytes > 0.0 && r.median_s > 0.0)
        .map(|r| {
            (
                r.case.family.as_str(),
                r.flops / r.bytes,
                r.flops / r.median_s / 1e9,
            )
        })
        .collect();
    let mut families: Vec<&str> = Vec::new();
    for p in &points {
        if !families.contains(&p.0) {
            families.push(p.0);
        }
    }
    let (mut x0, mut x1) = (0.1f64, 1000.0f64);
    let (mut y0, mut y1) = (f64::MAX, (peak / 1e9).max(1e-3));
    for &(_, x, y) in &points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if y0 == f64::MAX {
        y0 = 0.01;
    }
    let (x0, x1) = (x0 / 2.0, x1 * 2.0);
    let (y0, y1) = (y0 / 3.0, y1 * 3.0);

    let root = SVGBackend::new(path, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let title = format!(
        "openkern roofline: {} ({}), {} tier, {}",
        run.device.name,
        run.device.backend,
        run.tier,
        run.date.get(..10).unwrap_or(&run.date)
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(|e| err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("arithmetic intensity (FLOP per byte moved)")
        .y_desc("achieved GFLOP/s")
        .x_label_formatter(&|v| format!("{v}"))
        .y_label_formatter(&|v| format!("{v}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(path, e))?;

    // Roofs: the copy roof rises until it meets the FMA roof at the ridge point.
    if bw > 0.0 && peak > 0.0 {
        let ridge = peak / bw;
        let steps = 60;
        let mem: Vec<(f64, f64)> = (0..=steps)
            .map(|i| x0 * (ridge.min(x1) / x0).powf(i as f64 / steps as f64))
            .map(|x| (x, bw * x / 1e9))
            .filter(|&(_, y)| y >= y0)
            .collect();
        chart
            .draw_series(LineSeries::new(mem, BLACK.stroke_width(2)))
            .map_err(|e| err(path, e))?
            .label(format!("copy roof {:.1} GB/s", bw / 1e9))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                vec![(ridge.max(x0), peak / 1e9), (x1, peak / 1e9)],
                RED.stroke_width(2),
            ))
            .map_err(|e| err(path, e))?
            .label(format!("fma roof {:.1} GFLOP/s", peak / 1e9))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    for (i, fam) in families.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.0 == *fam)
            .map(|p| (p.1, p.2))
            .collect();
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, y)| Circle::new((x, y), 5, colour.filled())),
            )
            .map_err(|e| err(path, e))?
            .label(*fam)
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
        // the family's name beside its rightmost point
        if let Some(&(x, y)) = pts.iter().max_by(|a, b| a.0.total_cmp(&b.0)) {
            chart
                .draw_series(std::iter::once(Text::new(
                    fam.to_string(),
                    (x * 1.15, y),
                    ("sans-serif", 14).into_font().color(&colour),
                )))
                .map_err(|e| err(path, e))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}
