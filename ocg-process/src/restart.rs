//! When and how fast a crashed process is restarted, and when to give up.

use std::time::Duration;

/// The one restart policy of OCG: services under `ocg start --foreground`
/// and helper programs such as `llama-server` under a service.
///
/// The delay starts at `initial` and doubles per crash up to `max`; a process
/// that ran `reset_after` before it exited starts over at `initial` and is
/// not counted as a quick crash. After `give_up_after` quick crashes in a
/// row it is not restarted again: a program that cannot run (a CPU
/// instruction it lacks, a broken model file) is reported as crashing instead
/// of being called "loading" forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delay before the first restart.
    pub initial: Duration,
    /// The delay doubles per crash up to this cap.
    pub max: Duration,
    /// A process that ran this long before exiting starts over at `initial`.
    pub reset_after: Duration,
    /// Quick crashes in a row after which restarting stops.
    pub give_up_after: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
            give_up_after: 5,
        }
    }
}

/// The running count of one process's crashes under a [`RestartPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    policy: RestartPolicy,
    delay: Duration,
    quick_crashes: u32,
}

impl Backoff {
    /// A fresh count.
    pub fn new(policy: RestartPolicy) -> Self {
        Backoff {
            policy,
            delay: policy.initial,
            quick_crashes: 0,
        }
    }

    /// Record an exit after running `ran`: the delay before the restart, or
    /// `None` when the policy gives up.
    pub fn after_exit(&mut self, ran: Duration) -> Option<Duration> {
        if ran >= self.policy.reset_after {
            self.delay = self.policy.initial;
            self.quick_crashes = 0;
        }
        self.quick_crashes += 1;
        if self.quick_crashes >= self.policy.give_up_after {
            return None;
        }
        let delay = self.delay;
        self.delay = (self.delay * 2).min(self.policy.max);
        Some(delay)
    }

    /// Quick crashes in a row so far.
    pub fn quick_crashes(&self) -> u32 {
        self.quick_crashes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_and_quick_crashes_end_in_giving_up() {
        let policy = RestartPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
            reset_after: Duration::from_secs(10),
            give_up_after: 4,
        };
        let mut backoff = Backoff::new(policy);
        let quick = Duration::from_millis(1);
        assert_eq!(backoff.after_exit(quick), Some(Duration::from_millis(100)));
        assert_eq!(backoff.after_exit(quick), Some(Duration::from_millis(200)));
        assert_eq!(backoff.after_exit(quick), Some(Duration::from_millis(300)));
        assert_eq!(backoff.after_exit(quick), None);
        assert_eq!(backoff.quick_crashes(), 4);
    }

    #[test]
    fn a_long_run_starts_the_count_over() {
        let policy = RestartPolicy {
            give_up_after: 2,
            ..RestartPolicy::default()
        };
        let mut backoff = Backoff::new(policy);
        assert!(backoff.after_exit(Duration::ZERO).is_some());
        assert_eq!(
            backoff.after_exit(Duration::from_secs(61)),
            Some(policy.initial)
        );
        assert_eq!(backoff.quick_crashes(), 1);
    }
}
