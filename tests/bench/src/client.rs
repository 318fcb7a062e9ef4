//! `/exec` as the benchmark sends it: the answer is read line by line as it
//! streams, so that the time of the last reply is the exec's latency, and a
//! call can stop at its own site's reply (during a partition the others
//! cannot come).

use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::{Failure, SITES};
use cheops_testkit::Cluster;

/// Sends operations to the cluster's APIs.
#[derive(Clone)]
pub struct ExecClient {
    http: reqwest::Client,
    apis: Vec<String>,
    sites: String,
}

/// What one `/exec` call sends.
pub struct Sent<'a> {
    pub id: &'a str,
    pub command: &'a str,
    pub op_type: &'a str,
    /// The resource's config, as JSON.
    pub config: Option<&'a str>,
    /// One attached file: its name and bytes.
    pub file: Option<(&'a str, Vec<u8>)>,
}

impl<'a> Sent<'a> {
    pub fn new(id: &'a str, command: &'a str, op_type: &'a str) -> Sent<'a> {
        Sent {
            id,
            command,
            op_type,
            config: None,
            file: None,
        }
    }
}

/// What one `/exec` call got.
#[derive(Debug, Clone)]
pub struct Done {
    /// The operation's request id, as the replies give it.
    pub request: String,
    /// From sending the request to the last line read.
    pub elapsed: Duration,
    /// Sites that replied (`OK` or `KO`, not `TIMEOUT`).
    pub replied: usize,
}

impl ExecClient {
    pub fn new(cluster: &Cluster) -> ExecClient {
        let sites: Vec<String> = (0..SITES).map(|i| cluster.node(i).site.clone()).collect();
        ExecClient {
            http: cheops_testkit::authorized_client(cluster.token()),
            apis: (0..SITES).map(|i| cluster.node(i).api_url()).collect(),
            sites: sites.join("&"),
        }
    }

    /// Sends `command` for resource `id` (on every site) through site
    /// `via` and reads the whole answer: one line per site.
    pub async fn exec(
        &self,
        via: usize,
        id: &str,
        command: &str,
        op_type: &str,
    ) -> Result<Done, Failure> {
        self.send(via, Sent::new(id, command, op_type), None).await
    }

    /// As [`ExecClient::exec`], with one attached file `name` holding
    /// `bytes` (`{name}` in the command names it).
    pub async fn exec_with_file(
        &self,
        via: usize,
        id: &str,
        command: &str,
        file: (&str, Vec<u8>),
    ) -> Result<Done, Failure> {
        let sent = Sent {
            file: Some(file),
            ..Sent::new(id, command, "add")
        };
        self.send(via, sent, None).await
    }

    /// As [`ExecClient::exec_with_file`], with a type and a resource
    /// config (`config`'s JSON) of the caller's.
    pub async fn exec_with(&self, via: usize, sent: Sent<'_>) -> Result<Done, Failure> {
        self.send(via, sent, None).await
    }

    /// As [`ExecClient::exec`], but stops reading at the reply of site
    /// `via` itself.
    pub async fn exec_local(
        &self,
        via: usize,
        id: &str,
        command: &str,
        op_type: &str,
    ) -> Result<Done, Failure> {
        let until = format!("site{}", via + 1);
        self.send(via, Sent::new(id, command, op_type), Some(&until))
            .await
    }

    async fn send(
        &self,
        via: usize,
        sent: Sent<'_>,
        until_site: Option<&str>,
    ) -> Result<Done, Failure> {
        let id = sent.id;
        let mut form = Form::new()
            .text("sites", self.sites.clone())
            .text("command", sent.command.to_owned())
            .text("type", sent.op_type.to_owned());
        if let Some(config) = sent.config {
            form = form.text("config", config.to_owned());
        }
        if let Some((name, bytes)) = sent.file {
            form = form.part(
                name.to_owned(),
                Part::bytes(bytes).file_name(name.to_owned()),
            );
        }
        let start = Instant::now();
        let mut response = self
            .http
            .post(format!("{}/exec/{id}", self.apis[via]))
            .multipart(form)
            .send()
            .await
            .map_err(|e| format!("/exec/{id} through site{}: {e}", via + 1))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(format!("/exec/{id} answered {status}: {body}"));
        }
        let mut buffer = Vec::new();
        let mut done = Done {
            request: String::new(),
            elapsed: Duration::ZERO,
            replied: 0,
        };
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading /exec/{id}: {e}"))?
        {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let reply: Value = serde_json::from_slice(&line)
                    .map_err(|e| format!("/exec/{id} sent an unreadable line: {e}"))?;
                done.elapsed = start.elapsed();
                if let Some(request) = reply["RequestId"].as_str() {
                    done.request = request.to_owned();
                }
                if reply["Status"] != "TIMEOUT" {
                    done.replied += 1;
                }
                if until_site.is_some_and(|site| reply["Site"] == site) {
                    return Ok(done);
                }
            }
        }
        Ok(done)
    }
}
