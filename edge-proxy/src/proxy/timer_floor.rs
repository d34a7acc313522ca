//! A timer always due soon on each worker runtime, so that the upstream timeouts can use
//! tokio's timer without a syscall each.
//!
//! Pingora times each upstream read with its own fast timer: about 1,700 user-space
//! instructions a request (two boxes, a lock, a `Notify`, its clock thread's check). Tokio's
//! timer costs less, but tokio wakes its driver (a `write` to an eventfd) whenever a timer is
//! inserted earlier than the deadline the driver last parked for, and a worker busy with
//! requests often parks with nothing due for the next minute (the idle keep-alive timers):
//! each upstream timeout was then a syscall more. With this task's timer always due within
//! [`FLOOR`], a timeout of a second or more (the ones tokio's timer takes, see
//! `server::tuning`) is never the earliest, and inserting it wakes nothing.

use std::cell::Cell;
use std::time::Duration;

use tokio::runtime::{Handle, Id};

/// How far ahead each worker runtime always has a timer: well under the shortest timeout on
/// tokio's timer (one second).
const FLOOR: Duration = Duration::from_millis(500);

thread_local! {
    /// The runtime this thread last started a floor on.
    static STARTED: Cell<Option<Id>> = const { Cell::new(None) };
}

/// Starts the floor on the current runtime unless this thread already did. Called for each
/// new connection: cheap (a thread-local), and the first connection a worker takes starts
/// its floor before any request on it sets an upstream timeout.
pub fn keep() {
    let Ok(runtime) = Handle::try_current() else {
        return;
    };
    let id = runtime.id();
    if STARTED.replace(Some(id)) != Some(id) {
        runtime.spawn(async {
            loop {
                tokio::time::sleep(FLOOR).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_floor_per_runtime_and_none_outside_one() {
        keep();
        for _ in 0..2 {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            runtime.block_on(async {
                keep();
                keep();
                assert_eq!(Handle::current().metrics().num_alive_tasks(), 1);
            });
        }
    }

    /// Counted in `/proc/thread-self/io`: Linux only.
    #[cfg(target_os = "linux")]
    mod wakeups {
        use std::future::{poll_fn, Future};
        use std::pin::Pin;
        use std::task::Poll;
        use std::time::Duration;

        use tokio::time::Sleep;

        use super::super::keep;

        /// `write` syscalls this thread has made (the driver's wake-ups are writes to its
        /// eventfd, made on the thread that inserts the timer).
        fn writes() -> u64 {
            let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
            io.lines()
                .find_map(|line| line.strip_prefix("syscw: "))
                .unwrap()
                .parse()
                .unwrap()
        }

        /// Registers a timer without waiting for it.
        async fn register(mut sleep: Pin<&mut Sleep>) {
            poll_fn(|cx| {
                let _ = sleep.as_mut().poll(cx);
                Poll::Ready(())
            })
            .await
        }

        /// The driver's wake-ups for 20 requests' upstream timeouts on a worker that
        /// otherwise waits on a keep-alive timer a minute away, with the floor or without.
        fn wakeups(floor: bool) -> u64 {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if floor {
                    keep();
                }
                let idle = tokio::time::sleep(Duration::from_secs(60));
                tokio::pin!(idle);
                register(idle.as_mut()).await;
                tokio::task::yield_now().await;
                let before = writes();
                for _ in 0..20 {
                    let mut timeout = Box::pin(tokio::time::sleep(Duration::from_secs(5)));
                    register(timeout.as_mut()).await;
                    // The runtime parks its driver between requests (a yield does, with no
                    // time to wait), and parks again once the response has dropped the timer.
                    tokio::task::yield_now().await;
                    drop(timeout);
                    tokio::task::yield_now().await;
                }
                writes() - before
            })
        }

        #[test]
        fn with_the_floor_an_upstream_timeout_wakes_nothing() {
            // None, unless the machine stalls this loop past the floor's half second (its
            // own next timer is then the earliest, once).
            let with = wakeups(true);
            assert!(with <= 2, "{with} wake-ups with the floor");
            // Without it each timeout is the earliest timer and wakes the driver: if tokio
            // ever stops doing that, the floor is no longer needed.
            let without = wakeups(false);
            assert!(without >= 15, "{without} wake-ups without the floor");
        }
    }
}
