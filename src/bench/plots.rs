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

/// The SVG plots (`refit_latency.svg`, `infer_under_refit.svg`,
/// `refit_vs_reload.svg`), pushed onto `files`.
#[cfg(feature = "plots")]
pub fn write_plots(rows: &[Row], dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    use plotters::prelude::*;
    // Refit latency and memcpy by bytes, log axes, p10..p90 error bars.
    let latency = dir.join("refit_latency.svg");
    {
        let e = plot_err(&latency);
        let series = |b: &str| -> Vec<(f64, f64, f64, f64)> {
            rows.iter()
                .filter(|r| r.benchmark == b)
                .filter_map(|r| {
                    r.parameter
                        .parse::<f64>()
                        .ok()
                        .map(|x| (x, r.median_ns / 1e3, r.p10_ns / 1e3, r.p90_ns / 1e3))
                })
                .collect()
        };
        let (refit, memcpy) = (series("refit"), series("memcpy"));
        let xs = refit.iter().chain(&memcpy).map(|p| p.0);
        let (x0, x1) = xs
            .clone()
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let ys = refit.iter().chain(&memcpy).flat_map(|p| [p.2, p.3]);
        let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        if !refit.is_empty() {
            let root = SVGBackend::new(&latency, (800, 500)).into_drawing_area();
            root.fill(&WHITE).map_err(&e)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    "refit latency vs memcpy of the same bytes",
                    ("sans-serif", 20),
                )
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(
                    (x0 / 2.0..x1 * 2.0).log_scale(),
                    (y0.max(1e-4) / 2.0..y1 * 2.0).log_scale(),
                )
                .map_err(&e)?;
            chart
                .configure_mesh()
                .x_desc("bytes changed")
                .y_desc("time (us, median, p10-p90)")
                .draw()
                .map_err(&e)?;
            for (data, color, label) in [(&refit, RED, "refit"), (&memcpy, BLUE, "memcpy")] {
                chart
                    .draw_series(LineSeries::new(
                        data.iter().map(|p| (p.0, p.1)),
                        color.stroke_width(2),
                    ))
                    .map_err(&e)?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart
                    .draw_series(
                        data.iter()
                            .map(|p| ErrorBar::new_vertical(p.0, p.2, p.1, p.3, color.filled(), 8)),
                    )
                    .map_err(&e)?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()
                .map_err(&e)?;
            root.present().map_err(&e)?;
            files.push(latency.clone());
        }
    }

    // Inference throughput with and without refit, and refit against reload.
    let bars = |path: &Path, title: &str, y_desc: &str, items: Vec<(String, f64)>| -> Result<()> {
        let e = plot_err(path);
        let top = items.iter().map(|i| i.1).fold(0.0, f64::max) * 1.2;
        let root = SVGBackend::new(path, (700, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let labels: Vec<String> = items.iter().map(|i| i.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..items.len() as f64, 0.0..top.max(1e-9))
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_labels(items.len())
            .x_label_formatter(&|x| labels.get(x.floor() as usize).cloned().unwrap_or_default())
            .y_desc(y_desc)
            .draw()
            .map_err(&e)?;
        chart
            .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
                Rectangle::new(
                    [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, *v)],
                    BLUE.mix(0.6).filled(),
                )
            }))
            .map_err(&e)?;
        root.present().map_err(&e)
    };
    let iur: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.benchmark == "infer_under_refit")
        .map(|r| (r.parameter.clone(), 1e9 / r.median_ns))
        .collect();
    if !iur.is_empty() {
        let p = dir.join("infer_under_refit.svg");
        bars(
            &p,
            "inference throughput with and without refit (conv_stack)",
            "inferences per second",
            iur,
        )?;
        files.push(p);
    }
    let rvr: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.benchmark == "refit_vs_reload")
        .map(|r| (r.parameter.clone(), r.median_ns / 1e6))
        .collect();
    if !rvr.is_empty() {
        let p = dir.join("refit_vs_reload.svg");
        bars(
            &p,
            "refit against reload (conv_wide, every weight)",
            "ms (median)",
            rvr,
        )?;
        files.push(p);
    }

    Ok(())
}

/// Without the `plots` feature: no plots.
#[cfg(not(feature = "plots"))]
pub fn write_plots(_rows: &[Row], _dir: &Path, _files: &mut Vec<PathBuf>) -> Result<()> {
    Ok(())
}
