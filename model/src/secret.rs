//! A bearer token's value, shared by the node that checks tokens and the
//! client that sends one: one rule for what a token may be, and one type
//! that never prints it. How it travels (an HTTP header) is each HTTP
//! side's business.

use std::fmt;

/// The shortest token accepted: 16 characters (a random hex or base64
/// string of that length is beyond guessing over HTTP).
pub const MIN_TOKEN_LEN: usize = 16;

/// A token's value, never printed: `Debug` shows `Secret(…)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Checks a token as read from a file or the environment (surrounding
    /// whitespace, such as a file's last newline, is dropped): at least
    /// [`MIN_TOKEN_LEN`] visible ASCII characters, so that it fits in a
    /// header as is. The error never quotes the value.
    pub fn new(value: &str) -> Result<Secret, String> {
        let value = value.trim();
        if value.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "is shorter than {MIN_TOKEN_LEN} characters (generate one with `head -c 32 /dev/urandom | base64`)"
            ));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII characters, without spaces".into());
        }
        Ok(Secret(value.to_owned()))
    }

    /// The value, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_never_shown() {
        assert!(Secret::new("short").is_err());
        assert!(Secret::new("has a space in it!!").is_err());
        let secret = Secret::new(" long-enough-token-1\n").unwrap();
        assert_eq!(secret.expose(), "long-enough-token-1");
        assert!(!format!("{secret:?}").contains("long-enough"));
    }
}
