//! `parallel`'s task runner: every task runs exactly once, results come back in task order,
//! and a caller outside the pool never waits for the pool to start (it works through the
//! tasks itself; helpers that start late find nothing to do). This binary sets rayon's
//! global pool to 2 threads (a test binary is a process of its own).
#![cfg(feature = "parallel")]

mod common;

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

/// The per-channel reductions (moments, gradient sums) give the same bits on one thread
/// and on pools of 2, 3 and 5 threads: they combine fixed segments of the batch in order
/// (`moments::segment_len`), whichever thread took each. The plain-array path streams
/// those segments on one thread and relies on this. So do LayerNorm's column sums
/// (`parallel::units_per_reduction_task`), checked in the next test.
/// The tests below set the global parallel threshold: one at a time.
static THRESHOLD: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn reductions_do_not_depend_on_the_thread_count() {
    let _one_at_a_time = THRESHOLD.lock().unwrap_or_else(|e| e.into_inner());
    use batchnorm_core::backward::{grad_sums, Gate};
    use batchnorm_core::moments::moments;
    use batchnorm_core::{Dims, Layout};
    let mut rng = common::Rng::new(31);
    let shapes = [
        Dims { outer: 40, channels: 3, inner: 3000 }, // three segments of 14, 14 and 12 samples
        // A segment a sample, fewer than the pool's tasks: each cut into blocks of channels.
        Dims { outer: 4, channels: 40, inner: 3000 },
        // Planes of 500 values: segments of 5 samples (2048 values of each channel), 5, 5, 2.
        Dims { outer: 17, channels: 300, inner: 500 },
        Dims::new(&[70000, 3], Layout::ChannelsLast).unwrap(),
        Dims::new(&[9000, 64], Layout::ChannelsLast).unwrap(),
    ];
    let run = |threads: usize, f: &(dyn Fn() -> Vec<u64> + Sync)| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
    };
    for d in shapes {
        let x = rng.normal_vec(d.len(), 5.0, 2.0);
        let dy = rng.normal_vec(d.len(), 0.0, 1.0);
        let mean: Vec<f32> = rng.normal_vec(d.channels, 5.0, 0.1);
        let bits = || {
            let m = moments(&x, d);
            let g = grad_sums(&dy, &x, d, &mean, None);
            let gy = grad_sums(&dy, &x, d, &mean, Some(Gate::Output(&dy)));
            let mut v: Vec<u64> = m.iter().flat_map(|m| [m.count.to_bits(), m.mean.to_bits(), m.m2.to_bits()]).collect();
            v.extend(g.sum_dy.iter().chain(&g.sum_dy_xmu).chain(&gy.sum_dy).chain(&gy.sum_dy_xmu).map(|s| s.to_bits()));
            v
        };
        parallel::set_min_parallel_elems(usize::MAX);
        let one = run(1, &bits);
        parallel::set_min_parallel_elems(1);
        for threads in [2, 3, 5] {
            assert_eq!(run(threads, &bits), one, "{d:?} on {threads} threads");
        }
        parallel::set_min_parallel_elems(parallel::DEFAULT_MIN_PARALLEL_ELEMS);
    }
}

#[test]
fn layer_norm_parameter_gradients_do_not_depend_on_the_thread_count() {
    let _one_at_a_time = THRESHOLD.lock().unwrap_or_else(|e| e.into_inner());
    use batchnorm_core::norms::{rows_backward, rows_forward, Rows, Stat};
    let mut rng = common::Rng::new(32);
    for (rows, len) in [(3000, 77), (400, 768)] {
        let r = Rows::new(rows, len).unwrap();
        let x = rng.normal_vec(rows * len, 1.0, 2.0);
        let dy = rng.normal_vec(rows * len, 0.0, 1.0);
        let w = rng.normal_vec(len, 1.0, 0.3);
        let (mut y, mut mean, mut invstd) = (vec![0f32; rows * len], vec![0f32; rows], vec![0f32; rows]);
        rows_forward(&x, &mut y, r, Some(&w), None, 1e-5, Stat::Centered, &mut mean, &mut invstd).unwrap();
        let bits = || {
            let (mut dx, mut dw, mut db) = (vec![0f32; rows * len], vec![0f32; len], vec![0f32; len]);
            rows_backward(&dy, &x, &mut dx, r, Some(&w), &mean, &invstd, Stat::Centered, Some(&mut dw), Some(&mut db)).unwrap();
            dx.iter().chain(&dw).chain(&db).map(|v| v.to_bits() as u64).collect::<Vec<u64>>()
        };
        let run = |threads: usize| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(bits);
        parallel::set_min_parallel_elems(usize::MAX);
        let one = run(1);
        parallel::set_min_parallel_elems(1);
        for threads in [2, 3, 5] {
            assert_eq!(run(threads), one, "LayerNorm ({rows}, {len}) backward on {threads} threads");
        }
        parallel::set_min_parallel_elems(parallel::DEFAULT_MIN_PARALLEL_ELEMS);
    }
}
