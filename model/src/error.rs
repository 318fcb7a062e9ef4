//! Errors raised while reading documents, and how any error is told with
//! its causes (the node's logs and the client's messages say it alike).

use thiserror::Error;

/// Why a value could not be read as part of a Cheops document.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid time {value:?}: {reason}")]
    Timestamp { value: String, reason: &'static str },
}

/// An error with its causes, which reqwest (among others) keeps out of its
/// own message; a cause the message already ends with is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("could not connect")]
    struct Quiet(#[source] std::io::Error);

    #[derive(Debug, Error)]
    #[error("unreachable: {0}")]
    struct Verbose(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_once() {
        let refused = || std::io::Error::other("connection refused");
        assert_eq!(
            error_chain(&Quiet(refused())),
            "could not connect: connection refused"
        );
        assert_eq!(
            error_chain(&Verbose(refused())),
            "unreachable: connection refused"
        );
    }
}
