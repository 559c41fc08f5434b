//! The server's async runtime, with each worker thread kept on a CPU of its own.
//!
//! Measured on 2 cores, the server sharing one with its load generator (wrk, 16
//! connections): with its workers free to run anywhere, the kernel woke them on the load
//! generator's core (a socket's wake-up goes to the waker's CPU when the waker looks about to
//! sleep), and the other core sat ~42% idle; pinned, reads went from ~42,000/s to ~45,000/s,
//! and 2 cores did 1.76–1.85× the reads of one (1.62–1.66× unpinned).
//!
//! Only when there is a worker for each CPU the process may run on (tokio's default; not
//! under a CPU quota smaller than that, where pinning would crowd the workers onto the first
//! CPUs). A worker pins itself when it first parks: tokio calls `on_thread_park` on its
//! workers only. Every runtime thread first takes back all of the process's CPUs when it
//! starts (`on_thread_start`): a thread inherits its creator's CPUs, and the blocking pool's
//! threads, started by pinned workers, must stay free to run anywhere. Work stealing still
//! moves tasks between the workers.
//!
//! `sched_setaffinity` by hand (through `libc`, already a dependency): the `core_affinity`
//! crate can pin a thread to one CPU but not give it back a set of them.

use tokio::runtime::{Builder, Runtime};

/// The runtime; with `pin_workers`, each worker on a CPU of its own (see the module).
pub fn runtime(pin_workers: bool) -> std::io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    builder.enable_all();
    if pin_workers {
        pin(&mut builder);
    }
    builder.build()
}

#[cfg(target_os = "linux")]
fn pin(builder: &mut Builder) {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let Some(all) = allowed() else { return };
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &all) })
        .collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers < 2 || workers != cpus.len() {
        return;
    }
    let all = Arc::new(all);
    let next = AtomicUsize::new(0);
    thread_local!(static PINNED: Cell<bool> = const { Cell::new(false) });
    builder
        .worker_threads(workers)
        .on_thread_start(move || set(&all))
        .on_thread_park(move || {
            if !PINNED.replace(true) {
                if let Some(&cpu) = cpus.get(next.fetch_add(1, Ordering::Relaxed)) {
                    // SAFETY: a zeroed `cpu_set_t` is the empty set; CPU_SET writes one bit
                    // of it, `cpu` being below CPU_SETSIZE.
                    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                    unsafe { libc::CPU_SET(cpu, &mut one) };
                    set(&one);
                }
            }
        });
}

#[cfg(not(target_os = "linux"))]
fn pin(_builder: &mut Builder) {}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
fn allowed() -> Option<libc::cpu_set_t> {
    // SAFETY: sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes into `set`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let got =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (got == 0).then_some(set)
}

/// Keeps the calling thread on `cpus` (best effort: a failure leaves it where it was).
#[cfg(target_os = "linux")]
fn set(cpus: &libc::cpu_set_t) {
    // SAFETY: sched_setaffinity reads `size_of::<cpu_set_t>()` bytes of `cpus`.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), cpus) };
}
