//! A progress line for long client work (`nadi write`, `nadi read`) on stderr.
//!
//! Only when stderr is a terminal: then a line `wrote 120000 events, 12.3 MB, 4.1 MB/s` is
//! redrawn in place (carriage return + ANSI clear-line) at most four times a second (the
//! first after 64 events), and [`Progress::finish`] replaces it with a one-line summary
//! (events, bytes, seconds, events/s, MB/s). `nadi read` draws the live line only when its
//! stdout (the events) is not the same terminal, where it would be torn between events; the
//! summary it prints either way. When stderr is not a terminal (a file, a pipe, a test) nothing at all is printed, so
//! scripts that read stdout or stderr see exactly what they saw before. MB are 10^6 bytes.
//!
//! Cost when off: [`Progress::add`] adds two integers; when on, it also reads the monotonic
//! clock once per 64 events.

use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

/// The least time between two redraws of the line.
const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// Counts events and bytes and shows them on a terminal's stderr.
#[derive(Debug)]
pub struct Progress {
    /// `wrote` or `read`: the verb of the line.
    verb: &'static str,
    /// Whether to print at all (stderr is a terminal): the summary.
    enabled: bool,
    /// Whether to draw the live line too (not when the events themselves go to the same
    /// terminal on stdout, where the line would be torn between them).
    live: bool,
    started: Instant,
    last_draw: Instant,
    events: u64,
    bytes: u64,
    /// A progress line is on the screen (and must be cleared before anything else is printed).
    drawn: bool,
}

impl Progress {
    /// A progress meter for `nadi write`, printing only if stderr is a terminal.
    pub fn new(verb: &'static str) -> Progress {
        Self::with_terminal(verb, std::io::stderr().is_terminal(), true)
    }

    /// A progress meter for a command that prints the events on stdout: printing only if
    /// stderr is a terminal, the live line only if stdout is not one (`nadi read > file`).
    pub fn reading() -> Progress {
        Self::with_terminal("read", std::io::stderr().is_terminal(), !std::io::stdout().is_terminal())
    }

    /// As [`new`](Self::new), saying whether stderr is a terminal and whether to draw the
    /// live line there.
    pub fn with_terminal(verb: &'static str, enabled: bool, live: bool) -> Progress {
        let now = Instant::now();
        let live = enabled && live;
        // The first line is drawn at once (after the first 64 events), later ones in between.
        let last_draw = now.checked_sub(REDRAW_EVERY).unwrap_or(now);
        Progress { verb, enabled, live, started: now, last_draw, events: 0, bytes: 0, drawn: false }
    }

    /// One more event of `bytes` payload bytes.
    #[inline]
    pub fn add(&mut self, bytes: usize) {
        self.events += 1;
        self.bytes += bytes as u64;
        if self.live && self.events.is_multiple_of(64) {
            self.maybe_draw();
        }
    }

    /// Events counted so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    #[cold]
    fn maybe_draw(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_draw) < REDRAW_EVERY {
            return;
        }
        self.last_draw = now;
        let secs = now.duration_since(self.started).as_secs_f64();
        let line = format!(
            "{} {} events, {:.1} MB, {:.1} MB/s",
            self.verb,
            self.events,
            self.bytes as f64 / 1e6,
            self.bytes as f64 / 1e6 / secs.max(1e-9)
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// The summary line: events, bytes, seconds, events/s and MB/s since the start.
    pub fn summary(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let per = |v: f64| v / secs.max(1e-9);
        format!(
            "{} {} events, {} bytes in {:.2} s: {:.0} events/s, {:.2} MB/s",
            self.verb,
            self.events,
            self.bytes,
            secs,
            per(self.events as f64),
            per(self.bytes as f64) / 1e6
        )
    }

    /// Replaces the progress line with the summary (on a terminal; nothing otherwise).
    pub fn finish(&mut self) {
        if !self.enabled {
            return;
        }
        self.clear();
        eprintln!("{}", self.summary());
    }

    /// Removes the progress line, if one is shown.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    /// An error message printed after a failed command starts on a clean line.
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_without_a_terminal_and_summarises() {
        let mut p = Progress::with_terminal("wrote", false, true);
        for _ in 0..1000 {
            p.add(10);
        }
        assert_eq!(p.events(), 1000);
        let s = p.summary();
        assert!(s.starts_with("wrote 1000 events, 10000 bytes in "), "{s}");
        assert!(s.contains("events/s") && s.ends_with("MB/s"), "{s}");
        p.finish();
        assert!(!p.drawn, "nothing drawn without a terminal");
    }
}
