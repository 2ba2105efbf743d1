//! Turns the output of the core's divan benchmarks into ratios against their baselines.
//!
//! ```text
//! cargo bench -p callosum-proto --bench core > core.txt
//! cargo run --release -p callosum-tests --bin bench-ratios < core.txt
//! ```
//!
//! (Two steps, so that no build runs beside the benchmarks.)
//!
//! Every group of `callosum-proto/benches/core.rs` has a benchmark called `baseline`. For each
//! other benchmark this prints its median, the median of the group's baseline with the same
//! argument (or without one), and the ratio of the two, as a Markdown table.

use std::io::{self, BufRead};
use std::process::ExitCode;

/// One benchmark's row: its path in divan's tree and its median in nanoseconds.
struct Row {
    path: Vec<String>,
    median_ns: f64,
}

fn main() -> ExitCode {
    let mut rows = Vec::new();
    let mut path: Vec<String> = Vec::new();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else {
            eprintln!("bench-ratios: cannot read the input");
            return ExitCode::from(2);
        };
        if let Some(row) = parse_line(&line, &mut path) {
            rows.push(row);
        }
    }
    if rows.is_empty() {
        eprintln!("bench-ratios: no divan results on stdin");
        return ExitCode::from(2);
    }
    println!("| benchmark | median | baseline median | ratio |");
    println!("|---|---:|---:|---:|");
    for row in rows.iter().filter(|row| !is_baseline(row)) {
        let baseline = rows.iter().find(|base| is_baseline_of(base, row));
        let name = row.path.join(" / ");
        match baseline {
            Some(base) => println!(
                "| {name} | {} | {} | {:.2} |",
                show(row.median_ns),
                show(base.median_ns),
                row.median_ns / base.median_ns
            ),
            None => println!("| {name} | {} | none | |", show(row.median_ns)),
        }
    }
    ExitCode::SUCCESS
}

/// Reads one line of divan's tree; `path` keeps the names of the enclosing groups. Returns
/// the row if the line has a median.
fn parse_line(line: &str, path: &mut Vec<String>) -> Option<Row> {
    // The tree drawing comes in three-character steps ("│  ", "├─ ", "╰─ ", "   ").
    let drawing = line
        .chars()
        .take_while(|c| matches!(c, '│' | '├' | '╰' | '─' | ' '))
        .count();
    if drawing == 0 {
        // The header line ("core  fastest │ ...") or anything else at the root.
        return None;
    }
    let depth = drawing / 3;
    let rest: String = line.chars().skip(drawing).collect();
    let columns: Vec<&str> = rest.split('│').collect();
    let name = columns.first()?.split_whitespace().next()?;
    path.truncate(depth - 1);
    path.push(name.to_owned());
    let median_ns = columns
        .get(2)
        .and_then(|median| nanoseconds(median.trim()))?;
    Some(Row {
        path: path.clone(),
        median_ns,
    })
}

/// `"3.128 ns"` as nanoseconds.
fn nanoseconds(text: &str) -> Option<f64> {
    let (value, unit) = text.split_once(' ')?;
    let scale = match unit {
        "ps" => 1e-3,
        "ns" => 1.0,
        "µs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    Some(value.parse::<f64>().ok()? * scale)
}

fn is_baseline(row: &Row) -> bool {
    row.path.get(1).is_some_and(|name| name == "baseline")
}

/// Whether `base` is the baseline of `row`: same group, and same argument if it has one.
fn is_baseline_of(base: &Row, row: &Row) -> bool {
    is_baseline(base) && base.path[0] == row.path[0] && base.path.get(2) == row.path.get(2)
}

fn show(ns: f64) -> String {
    if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}
