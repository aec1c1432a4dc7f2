//! `parallel`'s task runner: every task runs exactly once, results come back in task order,
//! and a caller outside the pool never waits for the pool to start (it works through the
//! tasks itself; helpers that start late find nothing to do). This binary sets rayon's
//! global pool to 2 threads (a test binary is a process of its own).
#![cfg(feature = "parallel")]

use batchnorm_core::parallel;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Once};
use std::time::Duration;

fn global_pool() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| rayon::ThreadPoolBuilder::new().num_threads(2).build_global().unwrap());
}

#[test]
fn every_task_runs_once_and_results_keep_task_order() {
    global_pool();
    for tasks in [0, 1, 2, 3, 17, 1000] {
        let runs: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
        parallel::run_tasks(tasks, true, |i| {
            runs[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1), "{tasks} tasks: each once");
        let got = parallel::map_collect(tasks, true, |i| i * i);
        assert_eq!(got, (0..tasks).map(|i| i * i).collect::<Vec<_>>());
        // A reduction that is not commutative shows the order it combined in.
        let order = parallel::map_reduce(tasks, true, |i| vec![i], |mut a, b| {
            a.extend(b);
            a
        });
        assert_eq!(order.unwrap_or_default(), (0..tasks).collect::<Vec<_>>());
    }
    // Chunks: each element written by the task of its chunk, the last chunk short.
    let mut out = vec![0f32; 1003];
    parallel::for_each_chunk_mut(&mut out, 10, true, |t, c| c.iter_mut().for_each(|v| *v += t as f32 + 1.0));
    assert!(out.iter().enumerate().all(|(i, &v)| v == (i / 10) as f32 + 1.0));
    let mut words = vec![0u32; 101];
    parallel::for_each_chunk_pair(&mut out, 10, &mut words, 1, true, |t, c, w| w[0] = c.len() as u32 + t as u32 * 100);
    assert!(words.iter().enumerate().all(|(t, &w)| w == if t < 100 { 10 } else { 3 } + t as u32 * 100));
}

#[test]
fn a_caller_outside_the_pool_does_not_wait_for_busy_workers() {
    global_pool();
    // Both pool threads blocked until released; with plain rayon the caller below would
    // wait for them (deadlock here). The call runs on a thread of its own, watched.
    let hold = Arc::new(Barrier::new(3));
    for _ in 0..2 {
        let h = Arc::clone(&hold);
        rayon::spawn(move || {
            h.wait();
        });
    }
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = vec![0f32; 4096];
        parallel::for_each_chunk_mut(&mut out, 64, true, |t, c| c.fill(t as f32));
        let sums = parallel::map_reduce(64, true, |i| i as u64, |a, b| a + b);
        done.send((out, sums)).unwrap();
    });
    let result = finished.recv_timeout(Duration::from_secs(20));
    hold.wait(); // release the pool whatever happened
    let (out, sums) = result.expect("the call finished while every pool thread was busy");
    assert!(out.iter().enumerate().all(|(i, &v)| v == (i / 64) as f32));
    assert_eq!(sums, Some(64 * 63 / 2));
}

#[test]
fn a_task_that_panics_on_a_helper_fails_the_call() {
    global_pool();
    // Every task panics, so whichever thread runs one (caller or helper) panics; the
    // call must panic in the caller, not abort the process or return normally.
    for _ in 0..20 {
        let r = std::panic::catch_unwind(|| parallel::run_tasks(64, true, |i| panic!("task {i}")));
        assert!(r.is_err());
    }
    // Only the last task panics, usually on a helper: still a panic in the caller.
    let r = std::panic::catch_unwind(|| {
        parallel::run_tasks(4096, true, |i| {
            if i == 4095 {
                panic!("last task");
            }
        })
    });
    assert!(r.is_err());
}
