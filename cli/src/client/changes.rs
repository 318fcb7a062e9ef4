//! `cheops wait` and `cheops watch`: a node's changes feed
//! (`GET /changes/{id}`), read with long polls until every site of an
//! operation has replied, or followed as it happens.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cheops_model::{Secret, Status};
use serde::Deserialize;

use super::args::{WaitArgs, WatchArgs};
use super::http;
use super::node_url::{self, redacted};
use super::outcome::Outcome;
use super::{token, Failure};

/// The longest one long poll waits; a wait longer than this polls again.
const POLL: Duration = Duration::from_secs(60);
/// How long `watch` waits before reconnecting to a node that went away.
const RECONNECT: Duration = Duration::from_secs(1);

/// One line of the feed: an event, or a bookmark.
#[derive(Debug, Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    seq: Option<u64>,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    request: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    locations: Vec<String>,
    site: Option<String>,
    status: Option<Status>,
    output: Option<String>,
}

/// The node, the path and the token a feed is read with.
struct Feed {
    client: reqwest::Client,
    /// `{api}/changes[/{id}]`.
    url: String,
    token: Option<Secret>,
}

impl Feed {
    /// Reads `?{query}` of the feed, handing each line to `line` as it
    /// comes; returns the last bookmark's token.
    async fn read(
        &self,
        query: &str,
        mut line: impl FnMut(&Line, &str),
    ) -> Result<Option<u64>, Failure> {
        let url = format!("{}?{query}", self.url);
        let response = http::get(&self.client, &url, self.token.as_ref()).await?;
        let mut last = None;
        http::for_each_line(response, &url, |text| {
            let parsed: Line = serde_json::from_str(text).map_err(|e| http::broke_off(&url, e))?;
            match parsed.kind.as_str() {
                "bookmark" => last = parsed.seq.or(last),
                "gone" => {
                    return Err(Failure::Gone(format!(
                        "{} no longer keeps the events after {}: read again without --since",
                        redacted(&url),
                        parsed.seq.unwrap_or_default()
                    )))
                }
                _ => {
                    last = parsed.seq.or(last);
                    line(&parsed, text);
                }
            }
            Ok(())
        })
        .await?;
        Ok(last)
    }
}

fn feed(
    node: &super::args::NodeArgs,
    from: Option<&str>,
    id: Option<&str>,
) -> Result<Feed, Failure> {
    let base = node_url::one_node(node, from)?;
    let url = match id {
        Some(id) => {
            node_url::check_id(id)?;
            format!("{base}/changes/{id}")
        }
        None => format!("{base}/changes"),
    };
    Ok(Feed {
        client: http::client(node)?,
        url,
        token: token::token(node)?,
    })
}

/// A checked `cheops wait`, ready to send.
pub(crate) struct Wait {
    feed: Feed,
    request: String,
    timeout: Duration,
    json: bool,
}

pub(crate) fn prepare_wait(args: WaitArgs) -> Result<Wait, Failure> {
    let request = args.request.trim().to_owned();
    if request.is_empty()
        || request.len() > 200
        || !request
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(Failure::Usage(
            "--request: expected the request id `cheops exec` printed (32 hexadecimal characters)"
                .into(),
        ));
    }
    Ok(Wait {
        feed: feed(&args.node, args.from.as_deref(), Some(&args.id))?,
        request,
        timeout: Duration::from_secs(args.timeout),
        json: args.json,
    })
}

/// What is known of the operation waited for.
#[derive(Default)]
struct Progress {
    locations: Vec<String>,
    /// Each site's latest status.
    replied: BTreeMap<String, Status>,
    complete: bool,
    /// Its `/exec` was refused in the end: it never runs.
    refused: bool,
}

pub(crate) async fn wait(wait: Wait) -> Result<ExitCode, Failure> {
    let deadline = Instant::now() + wait.timeout;
    let mut progress = Progress::default();
    let mut since: Option<u64> = None;
    let mut stdout = std::io::stdout();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let poll = left.min(POLL).as_millis().max(1);
        let query = match since {
            Some(since) => format!("feed=longpoll&timeout={poll}&since={since}"),
            // The whole feed first: the replies may all be there already.
            None => "feed=normal".to_owned(),
        };
        let last = wait
            .feed
            .read(&query, |line, text| {
                if line.request != wait.request {
                    return;
                }
                if !line.locations.is_empty() {
                    progress.locations.clone_from(&line.locations);
                }
                match (line.kind.as_str(), &line.site, line.status) {
                    ("reply", Some(site), Some(status)) => {
                        progress.replied.insert(site.clone(), status);
                        let shown = if wait.json {
                            text.to_owned()
                        } else {
                            let total = progress.locations.len().max(progress.replied.len());
                            let output = line.output.as_deref().unwrap_or_default();
                            let output = output.strip_suffix('\n').unwrap_or(output);
                            format!(
                                "[{}/{total}] {status} {} {site}\t{output}",
                                progress.replied.len(),
                                line.request
                            )
                        };
                        let _ = writeln!(stdout, "{shown}");
                    }
                    ("operation-complete", _, _) => {
                        progress.complete = true;
                        if wait.json {
                            let _ = writeln!(stdout, "{text}");
                        }
                    }
                    ("operation-refused", _, _) => progress.refused = true,
                    _ => {}
                }
                let _ = stdout.flush();
            })
            .await?;
        since = last.or(since).or(Some(0));
        if progress.refused {
            return Err(Failure::Refused(format!(
                "operation {} was refused when it was sent: it never runs",
                wait.request
            )));
        }
        if progress.complete || Instant::now() >= deadline {
            break;
        }
    }
    let mut outcome = Outcome::default();
    for status in progress.replied.values() {
        outcome.record(*status);
    }
    if !progress.complete {
        let silent: Vec<&str> = progress
            .locations
            .iter()
            .filter(|site| !progress.replied.contains_key(*site))
            .map(String::as_str)
            .collect();
        let which = match (silent.is_empty(), progress.locations.is_empty()) {
            (_, true) => "no event about this operation yet".to_owned(),
            (true, false) => "not every site's reply yet".to_owned(),
            (false, false) => format!("no reply from {}", silent.join(", ")),
        };
        eprintln!("cheops: timed out after {:?}: {which}", wait.timeout);
        outcome.missing(silent.len().max(1));
    }
    Ok(outcome.exit_code())
}

/// A checked `cheops watch`, ready to send.
pub(crate) struct Watch {
    feed: Feed,
    since: Option<u64>,
    json: bool,
}

pub(crate) fn prepare_watch(args: WatchArgs) -> Result<Watch, Failure> {
    Ok(Watch {
        feed: feed(&args.node, args.from.as_deref(), args.id.as_deref())?,
        since: args.since,
        json: args.json,
    })
}

/// Follows the feed until interrupted; a node that goes away is asked
/// again from the last event printed, a refusal ends it.
pub(crate) async fn watch(watch: Watch) -> Result<ExitCode, Failure> {
    let mut since = watch.since;
    let mut connected = false;
    loop {
        let query = match since {
            Some(since) => format!("feed=continuous&since={since}"),
            None => "feed=continuous".to_owned(),
        };
        let mut stdout = std::io::stdout();
        let read = watch
            .feed
            .read(&query, |line, text| {
                let shown = if watch.json {
                    text.to_owned()
                } else {
                    render(line)
                };
                let _ = writeln!(stdout, "{shown}");
                let _ = stdout.flush();
                since = line.seq.or(since);
                connected = true;
            })
            .await;
        match read {
            Ok(last) => {
                since = last.or(since);
                connected = true;
            }
            // Events missed for good, or a node never reached: stop.
            Err(failure @ Failure::Gone(_)) => return Err(failure),
            Err(failure) if !connected => return Err(failure),
            Err(failure) => eprintln!("cheops: {failure}; reconnecting"),
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// `SEQ  TIME  TYPE  RESOURCE  REQUESTID  [SITE STATUS]`.
fn render(line: &Line) -> String {
    let mut text = format!(
        "{}  {}  {}  {}  {}",
        line.seq.unwrap_or_default(),
        line.time,
        line.kind,
        line.resource,
        line.request
    );
    if let (Some(site), Some(status)) = (&line.site, line.status) {
        text.push_str(&format!("  {site} {status}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_prints_on_one_line() {
        let line: Line = serde_json::from_str(
            r#"{"seq":7,"type":"reply","resource":"r","request":"q","time":"T","locations":["s1"],"site":"s1","status":"KO","output":"x"}"#,
        )
        .unwrap();
        assert_eq!(render(&line), "7  T  reply  r  q  s1 KO");
        let line: Line = serde_json::from_str(
            r#"{"seq":8,"type":"operation-complete","resource":"r","request":"q","time":"T","locations":["s1"]}"#,
        )
        .unwrap();
        assert_eq!(render(&line), "8  T  operation-complete  r  q");
    }
}
