//! The SVG plots of a bench report (with the `plots` feature).

use std::path::{Path, PathBuf};

#[cfg(feature = "plots")]
use super::io_err;
use super::Row;
#[cfg(feature = "plots")]
use crate::Error;
use crate::Result;

#[cfg(feature = "plots")]
fn plot_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| io_err(path, std::io::Error::other(e.to_string()))
}

/// `36 B`, `4 KiB`, `16 MiB`: a byte count as people write it.
pub fn human_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if (v - v.round()).abs() < 0.05 {
        format!("{} {}", v.round(), units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// `250 ns`, `1.2 us`, `3 ms`, `2 s`: a duration in nanoseconds, in the
/// unit that keeps it readable.
pub fn human_ns(ns: f64) -> String {
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "us")
    } else {
        (ns, "ns")
    };
    if v >= 10.0 || (v - v.round()).abs() < 0.05 {
        format!("{} {unit}", v.round())
    } else {
        format!("{v:.1} {unit}")
    }
}

/// One bar: its label, value, and p10..p90 whisker.
#[cfg(feature = "plots")]
struct Bar {
    label: String,
    value: f64,
    low: f64,
    high: f64,
}

/// A bar chart with one centred label per bar, an axis title on both
/// axes, a p10-p90 whisker on every bar, and each bar's value written
/// above it. The axis is linear from 0, so bar heights compare as the
/// values do (a log axis made a 1:28 ratio look like 1:5); a bar too short
/// to see is still read from its label.
#[cfg(feature = "plots")]
fn bars(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    items: &[Bar],
    y_fmt: &dyn Fn(f64) -> String,
) -> Result<()> {
    use plotters::prelude::*;
    let e = plot_err(path);
    let hi = items
        .iter()
        .map(|b| b.high.max(b.value))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let root = SVGBackend::new(path, (720, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let n = items.len();
    let label = |x: &SegmentValue<usize>| match x {
        SegmentValue::CenterOf(i) => items.get(*i).map(|b| b.label.clone()).unwrap_or_default(),
        _ => String::new(),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((0..n.max(2) - 1).into_segmented(), 0.0..hi * 1.2)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .y_labels(8)
        .x_label_formatter(&label)
        .y_label_formatter(&|y| y_fmt(*y))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(&e)?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, b)| {
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), b.value),
                ],
                BLUE.mix(0.6).filled(),
            );
            r.set_margin(0, 0, 25, 25);
            r
        }))
        .map_err(&e)?;
    // Whiskers: a line from p10 to p90 with caps, no mark at the median
    // (the bar's top is the median).
    for (i, b) in items.iter().enumerate() {
        let x = SegmentValue::CenterOf(i);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x.clone(), b.low), (x.clone(), b.high)],
                BLACK.stroke_width(1),
            )))
            .map_err(&e)?;
        for y in [b.low, b.high] {
            let cap = plotters::element::EmptyElement::at((x.clone(), y))
                + PathElement::new(vec![(-6, 0), (6, 0)], BLACK.stroke_width(1));
            chart.draw_series(std::iter::once(cap)).map_err(&e)?;
        }
        let text = plotters::element::EmptyElement::at((x.clone(), b.high.max(b.value)))
            + Text::new(
                y_fmt(b.value),
                (8, -18),
                ("sans-serif", 15).into_font().color(&BLACK),
            );
        chart.draw_series(std::iter::once(text)).map_err(&e)?;
    }
    root.present().map_err(&e)
}

/// The SVG plots (`refit_latency.svg`, `infer_under_refit.svg`,
/// `refit_vs_reload.svg`), pushed onto `files`.
#[cfg(feature = "plots")]
pub(crate) fn write_plots(rows: &[Row], dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    use plotters::prelude::*;
    // Refit latency and memcpy by bytes, log axes in human units, p10..p90
    // error bars.
    let latency = dir.join("refit_latency.svg");
    let e = plot_err(&latency);
    let series = |b: &str| -> Vec<(f64, f64, f64, f64)> {
        rows.iter()
            .filter(|r| r.benchmark == b)
            .filter_map(|r| {
                r.parameter
                    .parse::<f64>()
                    .ok()
                    .map(|x| (x, r.median_ns, r.p10_ns, r.p90_ns))
            })
            .collect()
    };
    let (refit, memcpy) = (series("refit"), series("memcpy"));
    if !refit.is_empty() {
        let xs = refit.iter().chain(&memcpy).map(|p| p.0);
        let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let ys = refit.iter().chain(&memcpy).flat_map(|p| [p.2, p.3]);
        let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        let root = SVGBackend::new(&latency, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "refit latency vs memcpy of the same bytes",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(
                // Ticks at the sizes measured.
                (x0 / 2.0..x1 * 2.0)
                    .log_scale()
                    .with_key_points(refit.iter().map(|p| p.0).collect::<Vec<f64>>()),
                (y0.max(0.1) / 2.0..y1 * 2.0).log_scale(),
            )
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc("bytes changed")
            .y_desc("time per operation (median, p10-p90)")
            .x_label_formatter(&|x| human_bytes(*x))
            .y_label_formatter(&|y| human_ns(*y))
            .draw()
            .map_err(&e)?;
        for (data, color, label) in [
            (&refit, RED, "refit: median (dot), p10-p90 (whisker)"),
            (&memcpy, BLUE, "memcpy: median (dot), p10-p90 (whisker)"),
        ] {
            chart
                .draw_series(LineSeries::new(
                    data.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))
                .map_err(&e)?
                .label(label)
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (20, 0)], color)
                        + Circle::new((10, 0), 3, color.filled())
                });
            chart
                .draw_series(
                    data.iter()
                        .map(|p| ErrorBar::new_vertical(p.0, p.2, p.1, p.3, color.filled(), 8)),
                )
                .map_err(&e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(&e)?;
        root.present().map_err(&e)?;
        files.push(latency.clone());
    }

    // Inference throughput with and without a writer, whiskers p10-p90.
    let iur: Vec<Bar> = rows
        .iter()
        .filter(|r| r.benchmark == "infer_under_refit")
        .map(|r| Bar {
            label: match r.parameter.as_str() {
                "none" => "no writer".to_string(),
                "w1_every_1ms" => "writer every 1 ms".to_string(),
                "w1_full_speed" => "writer flat out".to_string(),
                other => other.to_string(),
            },
            value: 1e9 / r.median_ns,
            low: 1e9 / r.p90_ns,
            high: 1e9 / r.p10_ns,
        })
        .collect();
    if !iur.is_empty() {
        let p = dir.join("infer_under_refit.svg");
        // The model it ran on: the one the inference latency rows name.
        let model = rows
            .iter()
            .filter(|r| r.benchmark == "latency" && !r.parameter.contains("_w1_"))
            .find_map(|r| r.parameter.strip_prefix("infer_"))
            .unwrap_or("the model");
        bars(
            &p,
            &format!("inference throughput on {model} with and without refit"),
            "refit traffic",
            "inferences per second (bar: median; whisker: p10-p90)",
            &iur,
            &|y| format!("{y:.0}"),
        )?;
        files.push(p);
    }
    let rvr: Vec<Bar> = rows
        .iter()
        .filter(|r| r.benchmark == "refit_vs_reload")
        .map(|r| Bar {
            label: match r.parameter.as_str() {
                "refit" => "refit every weight".to_string(),
                "reload" => "rebuild the engine".to_string(),
                other => other.to_string(),
            },
            value: r.median_ns,
            low: r.p10_ns,
            high: r.p90_ns,
        })
        .collect();
    if !rvr.is_empty() {
        let p = dir.join("refit_vs_reload.svg");
        bars(
            &p,
            "refit against reload on conv_wide (new weights)",
            "how the weights change",
            "time (bar: median; whisker: p10-p90)",
            &rvr,
            &|y| human_ns(y),
        )?;
        files.push(p);
    }
    Ok(())
}

/// Without the `plots` feature: no plots.
#[cfg(not(feature = "plots"))]
pub(crate) fn write_plots(_rows: &[Row], _dir: &Path, _files: &mut Vec<PathBuf>) -> Result<()> {
    Ok(())
}
