//! The timeline of a stress run, as an SVG beside the check report: the
//! version each reader observed over time (one colour per reader), every
//! refit's interval as a band, and the reads that break the contract in
//! red: torn outputs (a cross at the top) and, with one writer, stale
//! reads (a version older than one whose refit had returned before the
//! read began).

use std::path::Path;

use super::history::History;

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

/// Writes the timeline of `h` to `path` (SVG); `title` heads it.
///
/// # Errors
/// A message when the file cannot be drawn or written.
#[cfg(feature = "plots")]
pub fn write(path: &Path, h: &History, title: &str) -> Result<(), String> {
    use plotters::prelude::*;
    let e = |x: &dyn std::fmt::Display| format!("{}: {x}", path.display());
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
    let root = SVGBackend::new(path, (960, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..ms(t1) * 1.02, 0.0..v1 * 1.08)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("time since the race began (ms)")
        .y_desc("version observed")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|x| e(&x))?;
    // Refit intervals.
    chart
        .draw_series(h.writes.iter().map(|w| {
            Rectangle::new(
                [(ms(w.start), 0.0), (ms(w.end.max(w.start + 1)), v1 * 1.08)],
                BLUE.mix(0.08).filled(),
            )
        }))
        .map_err(|x| e(&x))?
        .label("a refit in progress")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLUE.mix(0.3).filled()));
    // Each reader's observations, thinned.
    let mut threads: Vec<u32> = h.reads.iter().map(|r| r.thread).collect();
    threads.sort_unstable();
    threads.dedup();
    for (k, t) in threads.iter().enumerate() {
        let reads: Vec<_> = h.reads.iter().filter(|r| r.thread == *t).collect();
        let step = (reads.len() / POINTS_PER_THREAD).max(1);
        // Red is kept for what breaks the contract.
        let color = Palette99::pick(k + 1).to_rgba();
        chart
            .draw_series(
                reads
                    .iter()
                    .step_by(step)
                    .filter_map(|r| r.value.map(|v| (ms((r.start + r.end) / 2), v as f64)))
                    .map(|p| Circle::new(p, 2, color.filled())),
            )
            .map_err(|x| e(&x))?
            .label(format!("reader {t}"))
            .legend(move |(x, y)| Circle::new((x + 7, y), 3, color.filled()));
    }
    // What breaks the contract, in red.
    let bad = bad_reads(h);
    chart
        .draw_series(bad.iter().map(|&(i, torn)| {
            let r = &h.reads[i];
            let y = if torn {
                v1 * 1.04
            } else {
                r.value.unwrap_or(0) as f64
            };
            Cross::new((ms((r.start + r.end) / 2), y), 5, RED.stroke_width(2))
        }))
        .map_err(|x| e(&x))?
        .label("torn (top) or stale read")
        .legend(|(x, y)| Cross::new((x + 7, y), 5, RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// Without the `plots` feature: no timeline.
///
/// # Errors
/// Never.
#[cfg(not(feature = "plots"))]
pub fn write(_path: &Path, _h: &History, _title: &str) -> Result<(), String> {
    Ok(())
}
