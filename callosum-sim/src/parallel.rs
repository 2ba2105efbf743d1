//! Independent runs on every core: a run is a pure function of its arguments, so running
//! them side by side changes the wall time and nothing else.

use std::num::NonZero;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// `[job(0), job(1), .., job(count - 1)]`, computed on as many threads as the machine has
/// cores, each taking the next job not taken yet; in job order, whatever thread ran which.
/// A panicking job panics the caller with its message.
pub(crate) fn map<T: Send>(count: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = thread::available_parallelism()
        .map_or(1, NonZero::get)
        .min(count);
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= count {
                            return done;
                        }
                        done.push((index, job(index)));
                    }
                })
            })
            .collect();
        for worker in workers {
            let done = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (index, result) in done {
                results[index] = Some(result);
            }
        }
    });
    results
        .into_iter()
        .map(|result| result.expect("every job ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_in_job_order() {
        assert_eq!(
            super::map(50, |i| i * i),
            (0..50).map(|i| i * i).collect::<Vec<_>>()
        );
        assert!(super::map(0, |i| i).is_empty());
    }
}
