//! The timeline of a stress run, as an SVG beside the check report: the
//! version each reader observed over time (one colour per reader), every
//! refit's interval as a band, and the reads that break the contract in
//! red: torn outputs (a cross at the top) and, with one writer, stale
//! reads (a version older than one whose refit had returned before the
//! read began).

use std::path::Path;

use crate::history::History;

/// Reads kept per reader thread (evenly spaced), so that a run of a
/// million inferences still draws quickly; every bad read is kept.
#[cfg(feature = "plots")]
const POINTS_PER_THREAD: usize = 3000;

/// Reads that break the contract: (index into `h.reads`, torn?). Stale
/// reads are marked only with one writer: with several, a lower version
/// published after a higher one is a legal order, which only the history
/// checker's linearizability search can tell apart.
#[cfg(feature = "plots")]
fn bad_reads(h: &History) -> Vec<(usize, bool)> {
    let mut writers: Vec<u32> = h.writes.iter().map(|w| w.thread).collect();
    writers.sort_unstable();
    writers.dedup();
    let one_writer = writers.len() <= 1;
    let mut writes: Vec<(u64, u64)> = h.writes.iter().map(|w| (w.end, w.version)).collect();
    writes.sort_unstable();
    // Latest version returned by each time (versions rise per writer; the
    // maximum is the newest any later read must see at least).
    let mut newest = Vec::with_capacity(writes.len());
    let mut top = h.initial;
    for &(end, v) in &writes {
        top = top.max(v);
        newest.push((end, top));
    }
    h.reads
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r.value {
            None => Some((i, true)),
            Some(v) => {
                let k = newest.partition_point(|&(end, _)| end < r.start);
                let must = if k == 0 { h.initial } else { newest[k - 1].1 };
                (one_writer && v < must).then_some((i, false))
            }
        })
        .collect()
}

/// The title every timeline has: `stress_r4w1 on reference: 4 readers,
/// 1 writer`, then `note` when there is one.
pub fn title(scenario: &str, engine: &str, h: &History, note: &str) -> String {
    let count = |mut t: Vec<u32>| {
        t.sort_unstable();
        t.dedup();
        t.len()
    };
    let readers = count(h.reads.iter().map(|r| r.thread).collect());
    let writers = count(h.writes.iter().map(|w| w.thread).collect());
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut t = format!(
        "{scenario} on {engine}: {}, {}",
        plural(readers, "reader"),
        plural(writers, "writer")
    );
    if !note.is_empty() {
        t.push_str(", ");
        t.push_str(note);
    }
    t
}

/// Writes the timeline of `h` to `path` (SVG); `title` heads it (see
/// [`title`]). The legend stands beside the plot, never over it; each
/// reader has its own colour and its own lane within a version (readers
/// observing the same version do not hide each other); a refit band is at
/// least 2 pixels wide whatever the run's length.
///
/// # Errors
/// [`crate::Error::Io`] when the file cannot be drawn or written.
#[cfg(feature = "plots")]
pub fn write(path: &Path, h: &History, title: &str) -> crate::Result<()> {
    use plotters::prelude::*;
    let e = |x: &dyn std::fmt::Display| crate::Error::Io {
        op: "draw",
        path: path.to_path_buf(),
        error: std::io::Error::other(x.to_string()),
    };
    let ms = |ns: u64| ns as f64 / 1e6;
    let t1 = h
        .reads
        .iter()
        .map(|r| r.end)
        .chain(h.writes.iter().map(|w| w.end))
        .max()
        .unwrap_or(1);
    let v1 = h
        .writes
        .iter()
        .map(|w| w.version)
        .chain(h.reads.iter().filter_map(|r| r.value))
        .max()
        .unwrap_or(h.initial)
        .max(1) as f64;
    let (width, height, legend_w) = (1040u32, 540u32, 200u32);
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(|x| e(&x))?;
    let (plot_area, legend_area) = root.split_horizontally(width - legend_w);
    let x_max = ms(t1) * 1.02;
    let y_max = v1 + 1.0;
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, -0.5..y_max)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("time since the race began (ms)")
        .y_desc("version observed")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if y.fract() == 0.0 && *y >= 0.0 {
                format!("{y:.0}")
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|x| e(&x))?;
    // Refit intervals, at least 2 pixels wide.
    let px = chart.plotting_area().dim_in_pixel().0.max(1) as f64;
    let min_w = 2.0 * x_max / px;
    let band = RGBColor(70, 110, 220).mix(0.25);
    chart
        .draw_series(h.writes.iter().map(|w| {
            let (a, b) = (ms(w.start), ms(w.end));
            let b = b.max(a + min_w);
            Rectangle::new([(a, -0.5), (b, y_max)], band.filled())
        }))
        .map_err(|x| e(&x))?;
    // Each reader's observations, thinned, in its own lane: reader k of n
    // is drawn (k - (n - 1) / 2) * 6 pixels off its version (at most half
    // a version), so readers that observe the same versions lie side by
    // side instead of on top of each other.
    let mut threads: Vec<u32> = h.reads.iter().map(|r| r.thread).collect();
    threads.sort_unstable();
    threads.dedup();
    let n = threads.len().max(1) as f64;
    let py = chart.plotting_area().dim_in_pixel().1.max(1) as f64;
    let per_px = (y_max + 0.5) / py;
    let lane_px = (6.0 * per_px).min(0.5 / n);
    let lane = |k: usize| (k as f64 - (n - 1.0) / 2.0) * lane_px;
    let mut legend: Vec<(String, RGBAColor)> = Vec::new();
    for (k, t) in threads.iter().enumerate() {
        let reads: Vec<_> = h.reads.iter().filter(|r| r.thread == *t).collect();
        let step = (reads.len() / POINTS_PER_THREAD).max(1);
        // Red is kept for what breaks the contract.
        let color = Palette99::pick(k + 1).to_rgba();
        let dy = lane(k);
        chart
            .draw_series(
                reads
                    .iter()
                    .step_by(step)
                    .filter_map(|r| r.value.map(|v| (ms((r.start + r.end) / 2), v as f64 + dy)))
                    .map(|p| Circle::new(p, 2, color.filled())),
            )
            .map_err(|x| e(&x))?;
        legend.push((format!("reader {t}"), color));
    }
    // What breaks the contract, in red: torn reads along the top, stale
    // ones at the version they observed.
    let bad = bad_reads(h);
    chart
        .draw_series(bad.iter().map(|&(i, torn)| {
            let r = &h.reads[i];
            let y = if torn {
                v1 + 0.6
            } else {
                r.value.unwrap_or(0) as f64
            };
            Cross::new((ms((r.start + r.end) / 2), y), 5, RED.stroke_width(2))
        }))
        .map_err(|x| e(&x))?;
    // The legend, beside the plot.
    let font = ("sans-serif", 14).into_font();
    let mut y = 40;
    let line = |area: &DrawingArea<SVGBackend, _>, y: &mut i32, text: String| {
        let r = area.draw(&Text::new(text, (34, *y - 7), font.clone()));
        *y += 24;
        r
    };
    legend_area
        .draw(&Rectangle::new([(8, y - 6), (26, y + 6)], band.filled()))
        .map_err(|x| e(&x))?;
    line(&legend_area, &mut y, "a refit in progress".into()).map_err(|x| e(&x))?;
    for (label, color) in legend.iter().take(16) {
        legend_area
            .draw(&Circle::new((17, y), 4, color.filled()))
            .map_err(|x| e(&x))?;
        line(&legend_area, &mut y, label.clone()).map_err(|x| e(&x))?;
    }
    legend_area
        .draw(&Cross::new((17, y), 5, RED.stroke_width(2)))
        .map_err(|x| e(&x))?;
    line(
        &legend_area,
        &mut y,
        format!("torn (top) or stale: {}", bad.len()),
    )
    .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// Without the `plots` feature: no timeline.
///
/// # Errors
/// Never.
#[cfg(not(feature = "plots"))]
pub fn write(_path: &Path, _h: &History, _title: &str) -> crate::Result<()> {
    Ok(())
}
