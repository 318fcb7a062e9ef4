//! The API's answers other than stored documents, in one place so that the
//! node that writes them and the client that reads them cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::Status;

/// What one site answers to a show: `OK`/`KO` from the site itself,
/// `KO` too when the site could not be asked, `TIMEOUT` when it was late.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteOutput {
    #[serde(rename = "Status")]
    pub status: Status,
    #[serde(rename = "Output", default)]
    pub output: String,
}

/// The body of every error answer of the node's listeners:
/// `{"error": "…"}`, a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>) -> Self {
        ErrorBody {
            error: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_read_and_write_as_the_api_sends_them() {
        let output = SiteOutput {
            status: Status::Timeout,
            output: "late".into(),
        };
        let written = serde_json::to_value(&output).unwrap();
        assert_eq!(written, json!({"Status": "TIMEOUT", "Output": "late"}));
        let read: SiteOutput = serde_json::from_value(json!({"Status": "OK"})).unwrap();
        assert_eq!(read.output, "", "a missing output is empty");
        let body = serde_json::to_value(ErrorBody::new("no")).unwrap();
        assert_eq!(body, json!({"error": "no"}));
    }
}
