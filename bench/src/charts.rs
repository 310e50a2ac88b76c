//! SVG charts for the report (plotters' SVG backend: text stays text, no font libraries).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::report::{rows, Case, LABEL_ORDER};

const SIZE: (u32, u32) = (900, 480);
/// Colours by label position: Fjord, Kafka, then others; the limit is grey.
const PALETTE: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
];
const LIMIT_COLOR: RGBColor = RGBColor(0xb0, 0xb0, 0xb0);

fn color(label_index: usize) -> RGBColor {
    PALETTE[label_index % PALETTE.len()]
}

fn err(e: impl std::fmt::Display) -> String {
    format!("chart: {e}")
}

/// Grouped bars of `row_name` for every case of `scenario`, one bar per broker, plus the
/// physical limit. Returns false (and writes nothing) when there is nothing to draw.
pub fn throughput(
    path: &Path,
    scenario: &str,
    row_name: &str,
    cases: &[Case],
    limits: &BTreeMap<String, f64>,
) -> Result<bool, String> {
    let Some(row) = rows(scenario).into_iter().find(|r| r.name == row_name) else {
        return Ok(false);
    };
    let mine: Vec<(usize, &Case)> = cases
        .iter()
        .enumerate()
        .filter(|(_, c)| c.scenario == scenario)
        .collect();
    let mut labels: Vec<String> = Vec::new();
    for (_, c) in &mine {
        for l in c.labels() {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
    }
    labels.sort_by_key(|l| {
        (
            LABEL_ORDER.iter().position(|o| o == l).unwrap_or(LABEL_ORDER.len()),
            l.clone(),
        )
    });
    let limit = row.limit.and_then(|(k, name)| Some((*limits.get(k)?, name)));
    // bars[i] = (case number, series index, value); series = labels, then the limit.
    let mut bars: Vec<(usize, usize, f64)> = Vec::new();
    for (slot, (_, c)) in mine.iter().enumerate() {
        for (li, l) in labels.iter().enumerate() {
            if let Some(v) = c.value(l, &row) {
                bars.push((slot, li, v));
            }
        }
        if let Some((v, _)) = limit {
            bars.push((slot, labels.len(), v));
        }
    }
    if bars.iter().all(|(_, s, _)| *s == labels.len()) {
        return Ok(false); // no broker values
    }
    let series = labels.len() + usize::from(limit.is_some());
    let ymax = bars.iter().map(|b| b.2).fold(0.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{scenario}: {row_name} (higher is better)"), ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(mine.len() as f64 - 0.5), 0f64..ymax.max(1e-9))
        .map_err(err)?;
    let case_numbers: Vec<usize> = mine.iter().map(|(i, _)| i + 1).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(mine.len() + 1)
        .x_label_formatter(&|x| {
            let slot = x.round();
            if (x - slot).abs() < 1e-6 && slot >= 0.0 {
                case_numbers
                    .get(slot as usize)
                    .map(|n| format!("case {n}"))
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(row_name)
        .draw()
        .map_err(err)?;
    let width = 0.8 / series as f64;
    for s in 0..series {
        let (name, c) = if s < labels.len() {
            (labels[s].clone(), color(s))
        } else {
            (format!("limit: {}", limit.map_or("", |l| l.1)), LIMIT_COLOR)
        };
        let mine_bars = bars.iter().filter(|b| b.1 == s).map(|&(slot, _, v)| {
            let x0 = slot as f64 - 0.4 + s as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v)], c.filled())
        });
        chart
            .draw_series(mine_bars)
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(true)
}

/// Nines of a percentile: 90% is 1, 99% is 2, 99.9% is 3. The x axis of an HDR latency plot,
/// which gives the tail the room it deserves.
pub fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).log10()
}

/// The percentile at `nines` as a label: 0 -> "0%", 2 -> "99%", 3 -> "99.9%".
pub fn percentile_label(nines: f64) -> String {
    let p = 100.0 - 100.0 * 10f64.powf(-nines);
    let decimals = (nines.round() - 2.0).clamp(0.0, 10.0) as usize;
    format!("{p:.decimals$}%")
}

/// Percentile lines of one latency case, one per broker (its latest run), log-scale ms.
pub fn latency(path: &Path, title: &str, case: &Case) -> Result<bool, String> {
    // p0 has no nines and p100 infinitely many; the table has the max.
    let usable = |p: f64| p > 0.0 && p < 100.0;
    let lines: Vec<(String, Vec<(f64, f64)>)> = case
        .labels()
        .into_iter()
        .filter_map(|l| {
            let run = case.runs[&l]
                .iter()
                .rev()
                .find(|r| !r.skipped && !r.latency_curve_ms.is_empty())?;
            let pts = run
                .latency_curve_ms
                .iter()
                .filter(|p| usable(p[0]) && p[1] > 0.0)
                .map(|p| (nines(p[0]), p[1]))
                .collect();
            Some((l, pts))
        })
        .collect();
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    if all.is_empty() {
        return Ok(false);
    }
    let xmax = all.iter().map(|p| p.0).fold(1.0, f64::max).ceil();
    let ymin = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) / 1.5;
    let ymax = all.iter().map(|p| p.1).fold(0.0, f64::max) * 1.5;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("End-to-end latency by percentile, {title}"), ("sans-serif", 20))
        .margin(15)
        .margin_right(45)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, (ymin..ymax).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(xmax as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_labels(8)
        .y_label_formatter(&|y| crate::report::fmt_num(*y))
        .light_line_style(TRANSPARENT)
        .x_desc("percentile")
        .y_desc("end-to-end latency, ms (log)")
        .draw()
        .map_err(err)?;
    for (i, (label, pts)) in lines.into_iter().enumerate() {
        let index = LABEL_ORDER
            .iter()
            .position(|o| *o == label)
            .unwrap_or(LABEL_ORDER.len() + i);
        let c = color(index);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_of_percentiles() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!((nines(50.0) - std::f64::consts::LOG10_2).abs() < 1e-9);
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }
}
