//! The live line on standard error that says which sites are still awaited;
//! only on a terminal, so that pipes and logs get the replies alone.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// How many awaited sites the line names before it says "…".
const NAMED: usize = 3;

pub(crate) struct Progress {
    enabled: bool,
    total: usize,
    waiting: Vec<String>,
    started: Instant,
    /// Whether the terminal shows the line now (and must have it erased
    /// before anything else is printed).
    drawn: bool,
}

impl Progress {
    pub fn new(sites: &[String]) -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            total: sites.len(),
            waiting: sites.to_vec(),
            started: Instant::now(),
            drawn: false,
        }
    }

    pub fn replied(&mut self, site: &str) {
        self.waiting.retain(|s| s != site);
    }

    /// The sites that have not replied, in the order given.
    pub fn waiting(&self) -> &[String] {
        &self.waiting
    }

    /// Shows the line, replacing the previous one.
    pub fn draw(&mut self) {
        if !self.enabled || self.waiting.is_empty() {
            return self.clear();
        }
        let text = line(&self.waiting, self.total, self.started.elapsed().as_secs());
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[K{text}");
        let _ = stderr.flush();
        self.drawn = true;
    }

    /// Erases the line, if shown.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[K");
            let _ = stderr.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `waiting for 2 of 3 sites (site2, site3) 4s`
fn line(waiting: &[String], total: usize, seconds: u64) -> String {
    let mut names = waiting
        .iter()
        .take(NAMED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if waiting.len() > NAMED {
        names.push_str(", …");
    }
    let noun = if total == 1 { "site" } else { "sites" };
    format!(
        "waiting for {} of {total} {noun} ({names}) {seconds}s",
        waiting.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_a_few_awaited_sites() {
        let sites: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(line(&sites[..1], 1, 0), "waiting for 1 of 1 site (a) 0s");
        assert_eq!(
            line(&sites, 5, 12),
            "waiting for 4 of 5 sites (a, b, c, …) 12s"
        );
    }
}
