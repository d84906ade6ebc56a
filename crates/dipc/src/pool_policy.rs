//! How big the preforked pool should be, Apache prefork's way: keep between
//! `min_spare` and `max_spare` workers idle, never more than `max_workers`
//! in all. Pure arithmetic on counts the supervisor reads from the worker
//! table, one call per maintenance tick, so it is tested without processes.

use thiserror::Error;

/// The pool's knobs, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPolicy {
    /// Workers forked at start.
    pub start: usize,
    /// Fork more when fewer than this are idle.
    pub min_spare: usize,
    /// Retire idle workers above this many.
    pub max_spare: usize,
    /// The most workers at once; also the number of worker slots.
    pub max_workers: usize,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("number of workers must be 1..{max}, got {got}")]
    Workers { got: u64, max: u32 },
    #[error("--max-workers must be 1..{max}, got {got}")]
    MaxWorkers { got: u64, max: u32 },
    #[error("--start-workers must be 1..--max-workers ({max}), got {got}")]
    Start { got: u64, max: u64 },
    #[error("--max-spare must be at least 1 and at least --min-spare ({min}), got {got}")]
    Spares { min: u64, got: u64 },
}

const MAX: u32 = shmlib::LIMITS.max_workers;

fn check_max_workers(max_workers: u64) -> Result<(), PolicyError> {
    if max_workers == 0 || max_workers > u64::from(MAX) {
        return Err(PolicyError::MaxWorkers {
            got: max_workers,
            max: MAX,
        });
    }
    Ok(())
}

impl PoolPolicy {
    /// `--workers n`: exactly n workers, replaced when they die.
    pub fn fixed(n: u64) -> Result<PoolPolicy, PolicyError> {
        if n == 0 || n > u64::from(MAX) {
            return Err(PolicyError::Workers { got: n, max: MAX });
        }
        let n = n as usize;
        Ok(PoolPolicy {
            start: n,
            min_spare: 0,
            max_spare: n,
            max_workers: n,
        })
    }

    /// The event model's default, nginx's `worker_processes auto`: one
    /// worker per CPU (at most `max_workers`), each serving any number of
    /// clients.
    pub fn per_cpu(max_workers: u64) -> Result<PoolPolicy, PolicyError> {
        check_max_workers(max_workers)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        PoolPolicy::fixed(cpus.min(max_workers))
    }

    pub fn dynamic(
        start: u64,
        min_spare: u64,
        max_spare: u64,
        max_workers: u64,
    ) -> Result<PoolPolicy, PolicyError> {
        check_max_workers(max_workers)?;
        if start == 0 || start > max_workers {
            return Err(PolicyError::Start {
                got: start,
                max: max_workers,
            });
        }
        if max_spare == 0 || max_spare < min_spare {
            return Err(PolicyError::Spares {
                min: min_spare,
                got: max_spare,
            });
        }
        // Both spares are at most meaningful up to max_workers.
        let cap = |n: u64| n.min(max_workers) as usize;
        Ok(PoolPolicy {
            start: start as usize,
            min_spare: cap(min_spare),
            max_spare: cap(max_spare),
            max_workers: max_workers as usize,
        })
    }

    pub fn is_fixed(&self) -> bool {
        self.min_spare == 0 && self.start == self.max_workers && self.max_spare == self.start
    }
}

/// What the supervisor does on a maintenance tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolAction {
    Hold,
    /// Fork this many more workers.
    Grow(usize),
    /// Ask one idle worker to retire.
    RetireOne,
}

/// Forks per tick at most: the rate doubles on each tick that is still short
/// of idle workers, from 1 up to this (Apache's MAX_SPAWN_RATE).
pub const MAX_SPAWN_RATE: usize = 32;
/// Ticks the pool must have had too many idle workers before it starts
/// retiring them, one per tick: a lull between bursts retires nobody.
pub const RETIRE_AFTER_TICKS: u32 = 10;

/// The pool's size over time.
#[derive(Debug)]
pub struct PoolSizer {
    policy: PoolPolicy,
    /// Workers the pool should have now; a dead worker is replaced, so only
    /// growth and retirement change it.
    wanted: usize,
    spawn_rate: usize,
    ticks_with_excess: u32,
}

impl PoolSizer {
    pub fn new(policy: PoolPolicy) -> PoolSizer {
        PoolSizer {
            policy,
            wanted: policy.start,
            spawn_rate: 1,
            ticks_with_excess: 0,
        }
    }

    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// A worker was asked to retire (after [`PoolAction::RetireOne`], if an
    /// idle one could still be claimed): the pool wants one fewer.
    pub fn retired(&mut self) {
        self.wanted = self.wanted.saturating_sub(1).max(1);
    }

    /// One tick: `live` workers are running (not counting those retiring),
    /// `idle` of them idle or starting.
    pub fn tick(&mut self, live: usize, idle: usize) -> PoolAction {
        if live < self.wanted {
            // Replacements are pending (or held back by the crash-loop
            // backoff): they will be idle workers, so wait for them.
            return PoolAction::Hold;
        }
        if idle < self.policy.min_spare && self.wanted < self.policy.max_workers {
            self.ticks_with_excess = 0;
            // As Apache does: the rate, not just the shortfall, so that a
            // burst of clients is met in a few ticks.
            let n = self.spawn_rate.min(self.policy.max_workers - self.wanted);
            self.wanted += n;
            self.spawn_rate = (self.spawn_rate * 2).min(MAX_SPAWN_RATE);
            return PoolAction::Grow(n);
        }
        self.spawn_rate = 1;
        if idle > self.policy.max_spare {
            self.ticks_with_excess += 1;
            if self.ticks_with_excess >= RETIRE_AFTER_TICKS {
                return PoolAction::RetireOne;
            }
        } else {
            self.ticks_with_excess = 0;
        }
        PoolAction::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizer(start: u64, min: u64, max: u64, most: u64) -> PoolSizer {
        PoolSizer::new(PoolPolicy::dynamic(start, min, max, most).expect("valid policy"))
    }

    #[test]
    fn grows_at_a_doubling_rate_up_to_max_workers() {
        let mut s = sizer(2, 4, 8, 40);
        let mut grown = Vec::new();
        // Every worker is busy as soon as it starts: the pool is always short.
        loop {
            let live = s.wanted();
            match s.tick(live, 0) {
                PoolAction::Grow(n) => grown.push(n),
                PoolAction::Hold => break,
                PoolAction::RetireOne => panic!("retired while short"),
            }
        }
        assert_eq!(grown, [1, 2, 4, 8, 16, 7]);
        assert_eq!(s.wanted(), 40);
    }

    #[test]
    fn rate_is_capped() {
        let mut s = sizer(1, 200, 200, 256);
        let mut last = 0;
        for _ in 0..8 {
            let live = s.wanted();
            if let PoolAction::Grow(n) = s.tick(live, 0) {
                last = n;
            }
        }
        assert_eq!(last, MAX_SPAWN_RATE);
    }

    #[test]
    fn waits_for_pending_replacements() {
        let mut s = sizer(4, 2, 8, 16);
        assert_eq!(s.tick(3, 0), PoolAction::Hold);
        assert_eq!(s.wanted(), 4);
    }

    #[test]
    fn retires_one_per_tick_after_a_sustained_excess() {
        let mut s = sizer(20, 2, 8, 32);
        for _ in 1..RETIRE_AFTER_TICKS {
            assert_eq!(s.tick(20, 20), PoolAction::Hold);
        }
        assert_eq!(s.tick(20, 20), PoolAction::RetireOne);
        s.retired();
        assert_eq!(s.tick(19, 19), PoolAction::RetireOne);
        // No idle worker could be claimed this time: nothing changes.
        assert_eq!(s.wanted(), 19);
        assert_eq!(s.tick(19, 19), PoolAction::RetireOne);
        s.retired();
        assert_eq!(s.wanted(), 18);
        // A busy moment resets the count.
        assert_eq!(s.tick(18, 8), PoolAction::Hold);
        assert_eq!(s.tick(18, 18), PoolAction::Hold);
    }

    #[test]
    fn a_fixed_pool_never_changes() {
        let mut s = PoolSizer::new(PoolPolicy::fixed(3).expect("valid"));
        for idle in [0, 1, 2, 3, 0, 3] {
            assert_eq!(s.tick(3, idle), PoolAction::Hold);
        }
        for _ in 0..2 * RETIRE_AFTER_TICKS {
            assert_eq!(s.tick(3, 3), PoolAction::Hold);
        }
        assert_eq!(s.wanted(), 3);
    }

    #[test]
    fn refuses_inconsistent_knobs() {
        assert!(PoolPolicy::dynamic(0, 1, 2, 4).is_err());
        assert!(PoolPolicy::dynamic(5, 1, 2, 4).is_err());
        assert!(PoolPolicy::dynamic(2, 3, 2, 4).is_err());
        assert!(PoolPolicy::dynamic(2, 0, 0, 4).is_err());
        assert!(PoolPolicy::dynamic(2, 1, 2, 0).is_err());
        assert!(PoolPolicy::dynamic(2, 1, 2, 257).is_err());
        assert!(PoolPolicy::fixed(0).is_err());
        assert!(PoolPolicy::fixed(257).is_err());
    }
}
