//! `callosum-sim --scenario NAME [--seed N] [--svg FILE]`: runs every strategy on one
//! scenario, prints the table to stdout and, if asked, writes the chart.

use std::process::ExitCode;
use std::time::Instant;

use callosum_sim::cli::{self, CliError};

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(CliError::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("error: {error}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let report = callosum_sim::simulate(args.scenario, args.size, args.seed);
    print!("{}", report.table());
    if let Some(path) = &args.svg
        && let Err(error) = std::fs::write(path, report.svg())
    {
        eprintln!("error: cannot write {path}: {error}");
        return ExitCode::FAILURE;
    }
    // Wall time goes to stderr: stdout depends on nothing but the arguments.
    eprintln!("wall time: {:.2} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
