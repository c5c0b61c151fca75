//! A progress bar on stderr for long work (`verify`, `export`): drawn only
//! when stderr is a terminal and the output mode is a table, so pipes,
//! logs and JSON consumers never see it. Redrawn at most every 100 ms.
use std::{
    io::Write,
    time::{Duration, Instant},
};

use super::output::Output;

const REDRAW: Duration = Duration::from_millis(100);
const WIDTH: usize = 30;

pub struct Progress {
    what: &'static str,
    total: u64,
    done: u64,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
}

/// Whether a progress bar belongs on stderr in this mode.
pub fn wanted(mode: Output) -> bool {
    // SAFETY: isatty only reads the descriptor's state.
    mode == Output::Table && unsafe { libc::isatty(libc::STDERR_FILENO) } == 1
}

impl Progress {
    /// A bar over `total` items of `what`; inert when `enabled` is false.
    pub fn new(what: &'static str, total: u64, enabled: bool) -> Progress {
        Progress {
            what,
            total,
            done: 0,
            start: Instant::now(),
            last: None,
            enabled,
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < REDRAW) {
            return;
        }
        self.last = Some(now);
        self.draw();
    }

    fn draw(&self) {
        let frac = if self.total == 0 {
            1.0
        } else {
            (self.done as f64 / self.total as f64).min(1.0)
        };
        let filled = (frac * WIDTH as f64) as usize;
        let secs = self.start.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        };
        let eta = if rate > 0.0 && self.total > self.done {
            format!(", {:.0} s left", (self.total - self.done) as f64 / rate)
        } else {
            String::new()
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{}{}] {}/{} {} ({:.0}/s{eta})",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            self.done,
            self.total,
            self.what,
            rate
        );
        let _ = err.flush();
    }

    /// Clears the bar so that what follows starts on a clean line.
    pub fn finish(&mut self) {
        if self.enabled && self.last.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
        self.enabled = false;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_without_drawing_when_disabled() {
        let mut p = Progress::new("receipts", 10, false);
        p.inc(4);
        p.inc(6);
        assert_eq!(p.done, 10);
        assert!(p.last.is_none());
        assert!(!wanted(Output::Json));
    }
}
