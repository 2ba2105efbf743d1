//! The chart: load per server over time, one panel per strategy.
//!
//! Each panel shows, every half second, the outstanding requests of each server averaged
//! over the last second: a grey band from the least to the most loaded server (the odd
//! server left out), their mean as a dark line, and the odd server as a red line. All panels
//! share one vertical scale, so strategies compare at a glance; an odd server above it is
//! clipped and its peak written beside the panel's name.

use std::fmt::Write as _;

use crate::report::Report;
use crate::sim::SAMPLE_US;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const PANEL: f64 = 140.0;
const GAP: f64 = 45.0;
/// Samples per averaging window (1 s) and per plotted point (0.5 s).
const WINDOW: usize = (1_000_000 / SAMPLE_US) as usize;
const STEP: usize = WINDOW / 2;

/// One plotted point of one panel.
struct Point {
    seconds: f64,
    least: f64,
    most: f64,
    mean: f64,
    odd: Option<f64>,
}

fn points(samples: &[Vec<f32>], odd: Option<usize>) -> Vec<Point> {
    (WINDOW - 1..samples.len())
        .step_by(STEP)
        .map(|k| {
            let rows = &samples[k + 1 - WINDOW..=k];
            let average = |s: usize| {
                rows.iter().map(|row| f64::from(row[s])).sum::<f64>() / rows.len() as f64
            };
            let servers = rows[0].len();
            let others: Vec<f64> = (0..servers)
                .filter(|&s| Some(s) != odd)
                .map(average)
                .collect();
            Point {
                seconds: ((k + 1) as u64 * SAMPLE_US) as f64 / 1e6,
                least: others.iter().copied().fold(f64::INFINITY, f64::min),
                most: others.iter().copied().fold(0.0, f64::max),
                mean: others.iter().sum::<f64>() / others.len().max(1) as f64,
                odd: odd.map(average),
            }
        })
        .collect()
}

impl Report {
    /// The chart as an SVG document. The same seed always gives the same text.
    pub fn svg(&self) -> String {
        let odd = self.params.odd_server;
        let panels: Vec<Vec<Point>> = self
            .runs
            .iter()
            .map(|run| points(&run.samples, odd))
            .collect();
        let top = panels.iter().flatten().map(|p| p.most).fold(1.0, f64::max) * 1.15;
        let seconds = (self.params.duration_us as f64 / 1e6).max(1.0);
        let plot_width = WIDTH - LEFT - RIGHT;
        let height = TOP + panels.len() as f64 * (PANEL + GAP);
        let x = |s: f64| LEFT + s / seconds * plot_width;
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="20" font-size="15">{}: outstanding requests per server (1 s average), seed {}</text>"#,
            self.scenario, self.seed
        );
        let legend = match odd {
            Some(s) => {
                format!("grey: range over the other servers; black: their mean; red: server {s}")
            }
            None => "grey: range over all servers; black: their mean".to_owned(),
        };
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="38" fill="#555">{legend}</text>"##
        );
        for (index, (run, points)) in self.runs.iter().zip(&panels).enumerate() {
            let base = TOP + index as f64 * (PANEL + GAP) + 15.0;
            let y = |v: f64| base + PANEL - v.min(top) / top * PANEL;
            let peak = points.iter().filter_map(|p| p.odd).fold(0.0, f64::max);
            let clipped = if peak > top {
                format!(
                    " (server {} peaks at {peak:.0}, off scale)",
                    odd.unwrap_or(0)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}{clipped}</text>"#,
                base - 4.0,
                run.strategy
            );
            let _ = writeln!(
                out,
                r##"<rect x="{LEFT}" y="{base:.1}" width="{plot_width}" height="{PANEL}" fill="none" stroke="#999"/>"##
            );
            for tick in [0.0, top / 2.0, top] {
                let _ = writeln!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{tick:.1}</text>"#,
                    LEFT - 4.0,
                    y(tick) + 4.0
                );
            }
            let step = if seconds > 30.0 { 10.0 } else { 1.0 };
            let mut tick = 0.0;
            while tick <= seconds {
                let _ = writeln!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{tick:.0} s</text>"##,
                    x(tick),
                    base + PANEL + 14.0
                );
                tick += step;
            }
            if points.is_empty() {
                continue;
            }
            let mut band = String::new();
            for p in points {
                let _ = write!(band, "{:.1},{:.1} ", x(p.seconds), y(p.most));
            }
            for p in points.iter().rev() {
                let _ = write!(band, "{:.1},{:.1} ", x(p.seconds), y(p.least));
            }
            let _ = writeln!(
                out,
                r##"<polygon points="{}" fill="#ccc"/>"##,
                band.trim_end()
            );
            let line = |value: &dyn Fn(&Point) -> Option<f64>| {
                let mut text = String::new();
                for p in points {
                    if let Some(v) = value(p) {
                        let _ = write!(text, "{:.1},{:.1} ", x(p.seconds), y(v));
                    }
                }
                text.trim_end().to_owned()
            };
            let _ = writeln!(
                out,
                r##"<polyline points="{}" fill="none" stroke="#222" stroke-width="1.2"/>"##,
                line(&|p| Some(p.mean))
            );
            if odd.is_some() {
                let _ = writeln!(
                    out,
                    r##"<polyline points="{}" fill="none" stroke="#d62728" stroke-width="1.5"/>"##,
                    line(&|p| p.odd)
                );
            }
        }
        out.push_str("</svg>\n");
        out
    }
}
