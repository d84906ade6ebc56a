//! The progress bar on stderr: only for runs long enough to wonder about,
//! only when stderr is a terminal (never in a pipe or a log), and redrawn
//! at most ten times a second so that it costs the loop nothing.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::{ProgressChoice, Stop};

/// Runs expected to last longer than this get a bar (auto mode); a run of
/// `-n` requests gets one once it has lasted this long.
const WORTH_A_BAR: Duration = Duration::from_secs(3);
const REDRAW_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Progress {
    choice: ProgressChoice,
    stop: Stop,
    warmup: Duration,
    started: Instant,
    last_draw: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A progress tracker for a run starting now; `stop` and `warmup` say
    /// how long it will be.
    pub fn new(choice: ProgressChoice, stop: Stop, warmup: Duration) -> Self {
        let now = Instant::now();
        let mut progress = Progress {
            choice: if std::io::stderr().is_terminal() {
                choice
            } else {
                ProgressChoice::Never
            },
            stop,
            warmup,
            started: now,
            last_draw: now,
            bar: None,
        };
        let expected_long = matches!(stop, Stop::Time(d) if warmup + d > WORTH_A_BAR);
        if progress.choice == ProgressChoice::Always
            || (progress.choice == ProgressChoice::Auto && expected_long)
        {
            progress.show();
        }
        progress
    }

    /// A tracker that never shows anything (the prefill's).
    pub fn hidden() -> Self {
        let now = Instant::now();
        Progress {
            choice: ProgressChoice::Never,
            stop: Stop::Requests(0),
            warmup: Duration::ZERO,
            started: now,
            last_draw: now,
            bar: None,
        }
    }

    fn show(&mut self) {
        let (len, template) = match self.stop {
            Stop::Requests(n) => (n, "{bar:40} {pos}/{len} requests, {elapsed}"),
            Stop::Time(d) => (
                u64::try_from((self.warmup + d).as_millis()).unwrap_or(u64::MAX),
                "{bar:40} {elapsed} of {msg}",
            ),
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        if let Stop::Time(d) = self.stop {
            bar.set_message(format!("{:.1} s", (self.warmup + d).as_secs_f64()));
        }
        self.bar = Some(bar);
    }

    /// Called from the loop with the time and the recorded replies so far.
    pub fn tick(&mut self, now: Instant, done: u64) {
        if self.choice == ProgressChoice::Never || now - self.last_draw < REDRAW_EVERY {
            return;
        }
        self.last_draw = now;
        if self.bar.is_none() && now - self.started >= WORTH_A_BAR {
            self.show();
        }
        if let Some(bar) = &self.bar {
            match self.stop {
                Stop::Requests(_) => bar.set_position(done),
                Stop::Time(_) => bar.set_position(
                    u64::try_from((now - self.started).as_millis()).unwrap_or(u64::MAX),
                ),
            }
        }
    }

    /// Removes the bar, so that the report starts on a clean line.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
