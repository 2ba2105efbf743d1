//! One scenario under several seeds: the median and the range of every figure, so that a
//! tail that flips with one seed's draws (a queue that grows without bound or not) does not
//! decide a comparison by chance.

use crate::figure::Figure;
use crate::parallel;
use crate::report::{Report, Row, summarise};
use crate::scenario::{Params, Scenario, Size, Strategy};
use crate::sim::run;
use crate::table;

/// Every strategy run on one scenario under each of several seeds.
#[derive(Clone, Debug)]
pub struct MultiReport {
    /// The scenario.
    pub scenario: Scenario,
    /// The scenario's parameters.
    pub params: Params,
    /// The seeds, in the order given.
    pub seeds: Vec<u64>,
    /// `rows[k]`: the rows of `seeds[k]`, one per strategy in the order of [`Strategy::ALL`].
    pub rows: Vec<Vec<Row>>,
    /// The first seed's whole report, its runs included (for the chart); the runs of the
    /// other seeds are summarised and dropped, so memory does not grow with the seeds.
    pub first: Report,
}

/// Runs every strategy on `scenario` under each seed, on as many threads as the machine has
/// cores (the result does not depend on them).
///
/// # Panics
///
/// If `seeds` is empty.
///
/// ```
/// use callosum_sim::{Figure, Scenario, Size, Strategy, simulate_seeds};
///
/// let size = Size { servers: 4, clients: 8, seconds: 2, pool: 4 };
/// let report = simulate_seeds(Scenario::SlowServer, size, 1..=3);
/// let p99s = report.values(Strategy::Jsq, Figure::P99);
/// assert_eq!(p99s.len(), 3);
/// let (least, most) = report.range(Strategy::Jsq, Figure::P99).unwrap();
/// let median = report.median(Strategy::Jsq, Figure::P99).unwrap();
/// assert!(least <= median && median <= most);
/// assert_eq!(report.median(Strategy::Jsq, Figure::OneServerPools), None, "no pools");
/// ```
pub fn simulate_seeds(
    scenario: Scenario,
    size: Size,
    seeds: impl IntoIterator<Item = u64>,
) -> MultiReport {
    let seeds: Vec<u64> = seeds.into_iter().collect();
    assert!(!seeds.is_empty(), "at least one seed");
    let params = scenario.params(size);
    let strategies = Strategy::ALL.len();
    let done = parallel::map(seeds.len() * strategies, |job| {
        let (k, strategy) = (job / strategies, Strategy::ALL[job % strategies]);
        let result = run(&params, strategy, seeds[k]);
        (summarise(&params, &result), (k == 0).then_some(result))
    });
    let mut rows: Vec<Vec<Row>> = vec![Vec::with_capacity(strategies); seeds.len()];
    let mut runs = Vec::with_capacity(strategies);
    for (job, (row, result)) in done.into_iter().enumerate() {
        rows[job / strategies].push(row);
        runs.extend(result);
    }
    let first = Report {
        scenario,
        seed: seeds[0],
        params: params.clone(),
        rows: rows[0].clone(),
        runs,
    };
    MultiReport {
        scenario,
        params,
        seeds,
        rows,
        first,
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

impl MultiReport {
    /// `figure` of `strategy` under each seed where it applies, in the order of the seeds.
    pub fn values(&self, strategy: Strategy, figure: Figure) -> Vec<f64> {
        self.rows
            .iter()
            .filter_map(|rows| {
                let row = rows.iter().find(|row| row.strategy == strategy)?;
                row.figure(figure)
            })
            .collect()
    }

    /// The median of `figure` of `strategy` over the seeds; `None` where it does not apply.
    pub fn median(&self, strategy: Strategy, figure: Figure) -> Option<f64> {
        median(self.values(strategy, figure))
    }

    /// The least and the greatest value of `figure` of `strategy` over the seeds.
    pub fn range(&self, strategy: Strategy, figure: Figure) -> Option<(f64, f64)> {
        let values = self.values(strategy, figure);
        let least = values.iter().copied().reduce(f64::min)?;
        let most = values.iter().copied().reduce(f64::max)?;
        Some((least, most))
    }

    /// "seeds 1-5" for consecutive seeds, else the list.
    fn seeds_label(&self) -> String {
        let consecutive = self.seeds.windows(2).all(|w| w[1] == w[0].wrapping_add(1));
        match self.seeds.as_slice() {
            [one] => format!("seed {one}"),
            [first, .., last] if consecutive => format!("seeds {first}-{last}"),
            seeds => {
                let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
                format!("seeds {}", list.join(", "))
            }
        }
    }

    /// Two tables under one header: the median of every figure over the seeds, then its
    /// range (least-greatest); then the notes. The same seeds always give the same text.
    pub fn table(&self) -> String {
        let seeds = self.seeds_label();
        let mut out = table::header(self.scenario, &self.params, &seeds);
        let dash = || "-".to_owned();
        out.push_str(&format!("median over {seeds}:\n"));
        out.push_str(&table::grid(&Strategy::ALL, |strategy, figure| {
            self.median(strategy, figure)
                .map_or_else(dash, |value| figure.format(value))
        }));
        out.push_str(&format!("range (least-greatest) over {seeds}:\n"));
        out.push_str(&table::grid(&Strategy::ALL, |strategy, figure| {
            self.range(strategy, figure)
                .map_or_else(dash, |(least, most)| {
                    format!("{}-{}", figure.format(least), figure.format(most))
                })
        }));
        out.push_str(&table::notes(self.scenario, &self.params));
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_median_of_an_even_count_is_between_the_middle_two() {
        assert_eq!(super::median(vec![]), None);
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 10.0]), Some(3.0));
        assert_eq!(
            super::median(vec![1.0, f64::INFINITY, f64::INFINITY]),
            Some(f64::INFINITY),
            "never settling is the slowest settle time"
        );
    }
}
