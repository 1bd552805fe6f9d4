//! Running many jobs of uneven size on all cores.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `work` on every job on rayon's threads, largest first, and returns
/// the results in the jobs' order. Handing out the largest jobs first (from
/// one shared counter, not rayon's halving splits) keeps a big file from
/// starting last and leaving the other cores idle while it alone runs.
pub fn largest_first<T: Sync, R: Send + Sync>(
    jobs: &[T],
    size: impl Fn(&T) -> u64,
    work: impl Fn(&T) -> Option<R> + Sync,
) -> Vec<Option<R>> {
    run_largest_first(jobs, size, work, |worker| {
        rayon::scope(|scope| {
            for _ in 0..rayon::current_num_threads() {
                scope.spawn(|_| worker());
            }
        });
    })
}

/// As `largest_first`, on `threads` plain threads rather than rayon's: for
/// jobs that mostly wait on the network, where more jobs in flight than
/// cores is the point.
pub fn largest_first_waiting<T: Sync, R: Send + Sync>(
    jobs: &[T],
    size: impl Fn(&T) -> u64,
    work: impl Fn(&T) -> Option<R> + Sync,
    threads: usize,
) -> Vec<Option<R>> {
    let threads = threads.clamp(1, jobs.len().max(1));
    run_largest_first(jobs, size, work, |worker| {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(worker);
            }
        });
    })
}

/// The shared part: the order, the counter, the results; `spawn_workers`
/// runs the worker loop it is given on some threads and returns when all
/// are done.
fn run_largest_first<T: Sync, R: Send + Sync>(
    jobs: &[T],
    size: impl Fn(&T) -> u64,
    work: impl Fn(&T) -> Option<R> + Sync,
    spawn_workers: impl FnOnce(&(dyn Fn() + Sync)),
) -> Vec<Option<R>> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(size(&jobs[i])));
    let next = AtomicUsize::new(0);
    let results: Vec<OnceLock<R>> = jobs.iter().map(|_| OnceLock::new()).collect();
    let worker = || {
        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            if let Some(r) = work(&jobs[i]) {
                let _ = results[i].set(r);
            }
        }
    };
    spawn_workers(&worker);
    results.into_iter().map(OnceLock::into_inner).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_and_results_keep_their_order() {
        let jobs: Vec<u64> = (0..1000).map(|i| (i * 7919) % 1000).collect();
        let runs = AtomicUsize::new(0);
        let out = largest_first(
            &jobs,
            |&j| j,
            |&j| {
                runs.fetch_add(1, Ordering::Relaxed);
                (j % 3 != 0).then_some(j * 2)
            },
        );
        assert_eq!(runs.into_inner(), 1000);
        for (j, r) in jobs.iter().zip(out) {
            assert_eq!(r, (j % 3 != 0).then_some(j * 2));
        }
        let out = largest_first_waiting(&jobs, |&j| j, |&j| (j % 3 != 0).then_some(j * 2), 16);
        for (j, r) in jobs.iter().zip(out) {
            assert_eq!(r, (j % 3 != 0).then_some(j * 2));
        }
    }
}
