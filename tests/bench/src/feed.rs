//! A site's continuous `_changes` feed, as the benchmark watches it: what
//! arrives is seen when it arrives, without polling.

use cheops_testkit::convergence::get_json;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Failure;

/// The documents written to one database from the moment it was opened;
/// stops following when dropped.
pub struct Feed {
    site: String,
    docs: mpsc::UnboundedReceiver<Value>,
    task: JoinHandle<()>,
}

impl Feed {
    /// Follows `couch_url` (the database URL, credentials included) from
    /// its current update sequence: everything written after this returns
    /// is delivered, even if the connection is not up yet.
    pub async fn open(
        http: &reqwest::Client,
        site: &str,
        couch_url: &str,
    ) -> Result<Feed, Failure> {
        let info = get_json(http, site, couch_url).await?;
        let since = match &info["update_seq"] {
            Value::String(seq) => seq.clone(),
            seq => seq.to_string(),
        };
        let request = http.get(format!("{couch_url}/_changes")).query(&[
            ("feed", "continuous"),
            ("include_docs", "true"),
            ("heartbeat", "5000"),
            ("since", since.as_str()),
        ]);
        let (sender, docs) = mpsc::unbounded_channel();
        let task = tokio::spawn(forward(request, sender));
        Ok(Feed {
            site: site.to_owned(),
            docs,
            task,
        })
    }

    /// The next document written; fails if the feed broke.
    pub async fn next(&mut self) -> Result<Value, Failure> {
        self.docs
            .recv()
            .await
            .ok_or_else(|| format!("{}'s changes feed ended", self.site))
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the feed line by line and sends each change's document; returns
/// (closing the channel) when the connection ends or fails.
async fn forward(request: reqwest::RequestBuilder, docs: mpsc::UnboundedSender<Value>) {
    let Ok(mut response) = request.send().await else {
        return;
    };
    let mut buffer = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let Ok(mut change) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let doc = change["doc"].take();
            if doc.is_object() && docs.send(doc).is_err() {
                return;
            }
        }
    }
}
