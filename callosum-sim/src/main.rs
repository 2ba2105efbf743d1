//! `callosum-sim --scenario NAME [--seed N] [--seeds N] [--svg FILE]`: runs every strategy on
//! one scenario under one seed or several, prints the table to stdout and, if asked, writes
//! the chart (of the first seed).

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
    let seeds = args.seed..=args.seed + (args.seeds - 1);
    let report = callosum_sim::simulate_seeds(args.scenario, args.size, seeds);
    if args.seeds == 1 {
        print!("{}", report.first.table());
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &args.svg
        && let Err(error) = std::fs::write(path, report.first.svg())
    {
        eprintln!("error: cannot write {path}: {error}");
        return ExitCode::FAILURE;
    }
    // Wall time goes to stderr: stdout depends on nothing but the arguments.
    eprintln!("wall time: {:.2} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
