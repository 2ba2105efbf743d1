//! The command line of the `callosum-sim` binary, parsed by hand.

use core::fmt;
use core::str::FromStr;

use crate::scenario::{Scenario, Size, UnknownScenario};

/// The usage text.
pub const USAGE: &str = "usage: callosum-sim --scenario NAME [--seed N] [--seeds N] [--svg FILE] \
[--servers N] [--clients N] [--seconds N] [--pool N]

scenarios: homogeneous-50 homogeneous-90 slow-server fast-fail crash-restart add-server \
skewed-clients few-clients (one client per 5 servers, pools of at least 64, whatever --clients)
defaults: --seed 1 --seeds 1 --servers 100 --clients 1000 --seconds 60 --pool 16
--seeds N runs the seeds --seed to --seed + N - 1 and prints the median and the range of each \
figure; --svg draws the first seed's runs";

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// The scenario to run.
    pub scenario: Scenario,
    /// The seed of every run, or the first seed.
    pub seed: u64,
    /// How many seeds, from `seed` on: `seed..seed + seeds`.
    pub seeds: u64,
    /// Where to write the SVG chart, if anywhere.
    pub svg: Option<String>,
    /// The cluster's size and the run's length.
    pub size: Size,
}

/// A command line that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CliError {
    /// `--help` or `-h`: not an error, but nothing to run.
    Help,
    /// `--scenario` was not given.
    MissingScenario,
    /// An option that does not exist.
    UnknownOption(String),
    /// An option given without its value.
    MissingValue(&'static str),
    /// A value that is not what the option takes.
    BadValue {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// What it should have been.
        expected: &'static str,
    },
    /// A scenario name that does not exist.
    UnknownScenario(UnknownScenario),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help => f.write_str("help requested"),
            CliError::MissingScenario => f.write_str("--scenario NAME is required"),
            CliError::UnknownOption(option) => write!(f, "unknown option `{option}`"),
            CliError::MissingValue(option) => write!(f, "{option} needs a value"),
            CliError::BadValue {
                option,
                value,
                expected,
            } => write!(f, "{option} `{value}`: expected {expected}"),
            CliError::UnknownScenario(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for CliError {}

fn number<T: FromStr + PartialOrd>(
    option: &'static str,
    value: String,
    least: T,
    expected: &'static str,
) -> Result<T, CliError> {
    match value.parse::<T>() {
        Ok(n) if n >= least => Ok(n),
        _ => Err(CliError::BadValue {
            option,
            value,
            expected,
        }),
    }
}

/// Parses the arguments after the program name.
///
/// ```
/// use callosum_sim::{Scenario, cli::parse};
///
/// let args = parse(["--scenario", "slow-server", "--seed", "7"].map(String::from)).unwrap();
/// assert_eq!((args.scenario, args.seed, args.seeds), (Scenario::SlowServer, 7, 1));
/// assert!(parse(["--seed", "x"].map(String::from)).is_err());
/// ```
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, CliError> {
    let mut args = args.into_iter();
    let mut scenario = None;
    let mut seed: u64 = 1;
    let mut seeds: u64 = 1;
    let mut svg = None;
    let mut size = Size::default();
    while let Some(arg) = args.next() {
        let option: &'static str = match arg.as_str() {
            "-h" | "--help" => return Err(CliError::Help),
            "--scenario" => "--scenario",
            "--seed" => "--seed",
            "--seeds" => "--seeds",
            "--svg" => "--svg",
            "--servers" => "--servers",
            "--clients" => "--clients",
            "--seconds" => "--seconds",
            "--pool" => "--pool",
            _ => return Err(CliError::UnknownOption(arg)),
        };
        let value = args.next().ok_or(CliError::MissingValue(option))?;
        match option {
            "--scenario" => {
                scenario = Some(value.parse().map_err(CliError::UnknownScenario)?);
            }
            "--seed" => seed = number(option, value, 0, "an unsigned 64-bit number")?,
            "--seeds" => seeds = number(option, value, 1, "a number of at least 1")?,
            "--svg" => svg = Some(value),
            "--servers" => size.servers = number(option, value, 2, "a number of at least 2")?,
            "--clients" => size.clients = number(option, value, 1, "a number of at least 1")?,
            "--seconds" => size.seconds = number(option, value, 1, "a number of at least 1")?,
            _ => size.pool = number(option, value, 1, "a number of at least 1")?,
        }
    }
    if seed.checked_add(seeds - 1).is_none() {
        return Err(CliError::BadValue {
            option: "--seeds",
            value: seeds.to_string(),
            expected: "a count that keeps the last seed within 64 bits",
        });
    }
    Ok(Args {
        scenario: scenario.ok_or(CliError::MissingScenario)?,
        seed,
        seeds,
        svg,
        size,
    })
}
