//! The clients of a chaos run, each sending its planned operations, one at
//! a time, through the API of the site each names, at their planned times
//! (or as soon as the previous one is answered), and what became of each.

use std::time::Duration;

use reqwest::multipart::Form;
use tokio::time::Instant;

use super::plan::{site, Mode, Op, Plan, MATRIX};

/// How long a client waits for `/exec` to answer (a frozen node answers
/// nothing).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it then reads replies before going on.
const REPLIES_TIMEOUT: Duration = Duration::from_secs(2);

/// What became of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `/exec` answered 200: the operation is stored. `replies` counts the
    /// `OK` replies read before the client went on.
    Accepted { replies: usize },
    /// The node answered with an error.
    Refused(String),
    /// No answer: the node was killed, frozen or its sidecar away.
    Failed(String),
}

/// How to reach the nodes.
#[derive(Debug, Clone)]
pub struct Api {
    pub http: reqwest::Client,
    /// Each node's API URL, by node index.
    pub urls: Vec<String>,
    /// `Authorization: Bearer` for the API, when the cluster has a token.
    pub token: Option<String>,
}

impl Api {
    /// Sends `op` through the node it names.
    pub async fn send(&self, plan: &Plan, op: &Op) -> Outcome {
        let resource = &plan.resources[op.resource];
        let sites: Vec<String> = resource.sites.iter().map(|&i| site(i)).collect();
        let mut form = Form::new()
            .text("sites", sites.join("&"))
            .text("type", op.op_type)
            .text("command", op.command(resource));
        if resource.matrix {
            form = form.text("config", MATRIX);
        }
        let mut request = self
            .http
            .post(format!("{}/exec/{}", self.urls[op.via], resource.id))
            .multipart(form);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = match tokio::time::timeout(ANSWER_TIMEOUT, request.send()).await {
            Err(_) => return Outcome::Failed(format!("no answer in {ANSWER_TIMEOUT:?}")),
            Ok(Err(e)) => return Outcome::Failed(e.to_string()),
            Ok(Ok(response)) => response,
        };
        if !response.status().is_success() {
            let status = response.status();
            let body = tokio::time::timeout(REPLIES_TIMEOUT, response.text()).await;
            let body = body.ok().and_then(Result::ok).unwrap_or_default();
            return Outcome::Refused(format!("{status} {}", body.trim()));
        }
        Outcome::Accepted {
            replies: ok_replies(response, sites.len()).await,
        }
    }
}

/// Counts `OK` reply lines until every site replied or the time is up.
async fn ok_replies(mut response: reqwest::Response, sites: usize) -> usize {
    let deadline = Instant::now() + REPLIES_TIMEOUT;
    let mut body = Vec::new();
    let count = |body: &[u8]| {
        String::from_utf8_lossy(body)
            .lines()
            .filter(|line| line.contains("\"Status\":\"OK\""))
            .count()
    };
    while count(&body) < sites {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    count(&body)
}

/// Runs client `client`'s part of the plan from `start`; returns the index
/// in `plan.ops` and the outcome of each of its operations. With faults,
/// each operation goes at its planned time (or when the one before is
/// answered). Without, the planned times are pauses: each operation goes
/// that long after the answer to the one before, until the run's time is
/// up, so that every client keeps sending at its own pace, and the
/// operations planned past the end are not sent.
pub async fn run(api: &Api, plan: &Plan, client: usize, start: Instant) -> Vec<(usize, Outcome)> {
    let end = start + Duration::from_millis(plan.millis);
    let mut outcomes = Vec::new();
    let mut previous = 0;
    for (index, op) in plan.ops.iter().enumerate() {
        if op.client != client {
            continue;
        }
        match plan.mode {
            Mode::Faults => {
                tokio::time::sleep_until(start + Duration::from_millis(op.at_ms)).await;
            }
            Mode::Concurrency => {
                let pause = Duration::from_millis(op.at_ms.saturating_sub(previous));
                previous = op.at_ms;
                tokio::time::sleep(pause).await;
                if Instant::now() >= end {
                    break;
                }
            }
        }
        outcomes.push((index, api.send(plan, op).await));
    }
    outcomes
}
