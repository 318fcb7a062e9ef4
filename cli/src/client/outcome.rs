//! The exit status of a request, from the statuses the sites answered.

use std::process::ExitCode;

use cheops_model::Status;

use super::{EXIT_KO, EXIT_REFUSED, EXIT_TIMEOUT};

/// What the sites answered so far. A KO outweighs a TIMEOUT: a site that
/// failed needs attention more than one that is late.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    ko: usize,
    timeout: usize,
    /// Lines of the answer that were not a reply at all.
    unreadable: usize,
}

impl Outcome {
    pub fn record(&mut self, status: Status) {
        match status {
            Status::Ok => {}
            Status::Ko => self.ko += 1,
            Status::Timeout => self.timeout += 1,
        }
    }

    /// A site the answer never mentioned counts as late.
    pub fn missing(&mut self, sites: usize) {
        self.timeout += sites;
    }

    /// An answer the client cannot read is the node's fault, as a refusal is.
    pub fn unreadable(&mut self) {
        self.unreadable += 1;
    }

    pub fn code(&self) -> u8 {
        if self.unreadable > 0 {
            EXIT_REFUSED
        } else if self.ko > 0 {
            EXIT_KO
        } else if self.timeout > 0 {
            EXIT_TIMEOUT
        } else {
            0
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(statuses: &[Status]) -> u8 {
        let mut outcome = Outcome::default();
        statuses.iter().for_each(|s| outcome.record(*s));
        outcome.code()
    }

    #[test]
    fn ko_outweighs_timeout_which_outweighs_ok() {
        assert_eq!(code(&[]), 0);
        assert_eq!(code(&[Status::Ok, Status::Ok]), 0);
        assert_eq!(code(&[Status::Ok, Status::Timeout]), 2);
        assert_eq!(code(&[Status::Timeout, Status::Ko, Status::Ok]), 1);
    }

    #[test]
    fn missing_sites_are_late_and_garbage_is_the_nodes_fault() {
        let mut outcome = Outcome::default();
        outcome.missing(1);
        assert_eq!(outcome.code(), 2);
        outcome.record(Status::Ko);
        outcome.unreadable();
        assert_eq!(outcome.code(), 3);
    }
}
