//! `cheops exec`, `http` and `redis`: builds the `/exec` form (files
//! included), sends it to the first site's node and prints each site's
//! reply as it arrives.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use cheops_model::{error_chain, ReplyDocument, ResourceConfig, Secret};
use futures::StreamExt;
use reqwest::multipart::{Form, Part};

use super::args::{ExecArgs, HttpArgs, NodeArgs, OperationArgs, RedisArgs};
use super::http;
use super::items;
use super::node_url;
use super::outcome::Outcome;
use super::progress::Progress;
use super::{token, uploads, Failure};

/// How often the live line's clock moves.
const TICK: Duration = Duration::from_secs(1);

/// A checked request, ready to send.
pub(crate) struct Request {
    client: reqwest::Client,
    url: String,
    form: Form,
    token: Option<Secret>,
    /// The sites expected to reply, without repeats.
    sites: Vec<String>,
    json: bool,
}

/// Where an operation goes and what comes with every kind: checked here.
struct Target {
    client: reqwest::Client,
    url: String,
    token: Option<Secret>,
    sites: Vec<String>,
    /// The config file's text, checked.
    config: Option<String>,
}

impl Target {
    fn new(
        id: &str,
        sites: &str,
        op_type: &str,
        config: Option<&std::path::Path>,
        node: &NodeArgs,
    ) -> Result<Target, Failure> {
        node_url::check_id(id)?;
        let sites = node_url::sites(sites)?;
        let Some(first) = sites.first() else {
            return Err(Failure::Usage(
                "--sites names no site: give sites separated by '&'".into(),
            ));
        };
        if op_type.trim().is_empty() {
            return Err(Failure::Usage("--type is empty".into()));
        }
        let config = config.map(read_config).transpose()?;
        let client = http::client(node)?;
        let url = format!("{}/exec/{id}", node_url::resolve(node, Some(first))?);
        let token = token::token(node)?;
        Ok(Target {
            client,
            url,
            token,
            sites,
            config,
        })
    }

    fn request(self, form: Form, json: bool) -> Request {
        let form = match self.config {
            Some(config) => form.text("config", config),
            None => form,
        };
        Request {
            client: self.client,
            url: self.url,
            form,
            token: self.token,
            sites: self.sites,
            json,
        }
    }
}

/// Checks everything that can be checked here and reads the files; nothing
/// is sent yet.
pub(crate) fn prepare(args: ExecArgs) -> Result<Request, Failure> {
    let target = Target::new(
        &args.id,
        &args.sites,
        &args.op_type,
        args.config.as_deref(),
        &args.node,
    )?;
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::Usage(format!("cannot read the current directory: {e}")))?;
    let prepared = uploads::prepare(&args.command, &cwd)?;

    // Names are sent as written (`mydir/sub/f`): the node's form reader
    // does not decode the RFC 2231 form reqwest uses by default for names
    // with a '/'.
    let mut form = Form::new()
        .percent_encode_noop()
        .text("sites", args.sites)
        .text("type", args.op_type)
        .text("command", prepared.command);
    for (name, content) in prepared.files {
        // The node keys files by field name; the filename is for humans
        // reading the request.
        let file_name = name.rsplit('/').next().unwrap_or(&name).to_owned();
        form = form.part(name, Part::bytes(content).file_name(file_name));
    }
    Ok(target.request(form, args.json))
}

/// `cheops http` and `cheops redis`: an operation of another kind, its
/// form built by `fields` after the common ones.
pub(crate) fn prepare_operation(
    args: OperationArgs,
    kind: &str,
    command: String,
    fields: Vec<(&'static str, Vec<u8>)>,
) -> Result<Request, Failure> {
    let target = Target::new(
        &args.id,
        &args.sites,
        &args.op_type,
        args.config.as_deref(),
        &args.node,
    )?;
    let mut form = Form::new()
        .text("sites", args.sites)
        .text("type", args.op_type)
        .text("kind", kind.to_owned())
        .text("command", command);
    for (name, value) in fields {
        form = form.part(name, Part::bytes(value));
    }
    Ok(target.request(form, args.json))
}

/// `cheops http METHOD PATH ITEMS…`.
pub(crate) fn prepare_http(args: HttpArgs) -> Result<Request, Failure> {
    let (command, fields) = http_form(&args.method, &args.path, &args.items)?;
    prepare_operation(args.operation, "http", command, fields)
}

/// `cheops redis CMD ARG…`.
pub(crate) fn prepare_redis(args: RedisArgs) -> Result<Request, Failure> {
    let (command, fields) = redis_form(args.command, args.args)?;
    prepare_operation(args.operation, "redis", command, fields)
}

/// A command of another kind as a form takes it: its `command` field,
/// then its other fields in order.
pub(crate) type KindForm = (String, Vec<(&'static str, Vec<u8>)>);

/// An HTTP request's form from its method, path and httpie items.
pub(crate) fn http_form(method: &str, path: &str, items: &[String]) -> Result<KindForm, Failure> {
    let upper = method.trim().to_ascii_uppercase();
    if upper.is_empty() || !upper.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(Failure::Usage(format!("{method:?} is not an HTTP method")));
    }
    let read = |name: &str| std::fs::read(name).map_err(|e| format!("cannot read @{name}: {e}"));
    let built = items::build(path, items, read).map_err(Failure::Usage)?;
    let mut fields: Vec<(&'static str, Vec<u8>)> = built
        .headers
        .into_iter()
        .map(|h| ("header", h.into_bytes()))
        .collect();
    if let Some(body) = built.body {
        fields.push(("body", body));
    }
    Ok((format!("{upper} {}", built.path), fields))
}

/// A Redis command's form from its name and arguments.
pub(crate) fn redis_form(command: String, args: Vec<String>) -> Result<KindForm, Failure> {
    if command.is_empty() || command.contains(char::is_whitespace) {
        return Err(Failure::Usage(format!(
            "{command:?} is not a Redis command's name; its arguments follow it"
        )));
    }
    let fields = args
        .into_iter()
        .map(|arg| ("arg", arg.into_bytes()))
        .collect();
    Ok((command, fields))
}

/// The config file's text, sent as written once known to be a valid
/// resource config (or `null`, which the node reads as none).
fn read_config(path: &std::path::Path) -> Result<String, Failure> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read --config {shown}: {e}")))?;
    serde_json::from_str::<Option<ResourceConfig>>(&text).map_err(|e| {
        Failure::Usage(format!(
            "--config {shown} is not a valid resource config: {e}"
        ))
    })?;
    Ok(text)
}

/// Sends the request and prints the replies; the exit status says how the
/// sites fared.
pub(crate) async fn send(request: Request) -> Result<ExitCode, Failure> {
    let response = http::post(
        &request.client,
        &request.url,
        request.form,
        request.token.as_ref(),
    )
    .await?;
    let mut replies = Replies {
        expected: request.sites.len(),
        count: 0,
        json: request.json,
        outcome: Outcome::default(),
        progress: Progress::new(&request.sites),
    };
    let mut body = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            chunk = body.next() => match chunk {
                None => break,
                Some(Ok(bytes)) => {
                    pending.extend_from_slice(&bytes);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        replies.line(&line);
                    }
                }
                Some(Err(e)) => {
                    replies.progress.clear();
                    return Err(http::broke_off(
                        &request.url,
                        format!("{}{}", error_chain(&e.without_url()), replies.unanswered()),
                    ));
                }
            },
            _ = tick.tick() => replies.progress.draw(),
        }
    }
    replies.line(&pending);
    replies.progress.clear();
    let missing = replies.progress.waiting().len();
    if missing > 0 {
        eprintln!("cheops: the answer ended early{}", replies.unanswered());
        replies.outcome.missing(missing);
    }
    Ok(replies.outcome.exit_code())
}

/// The replies printed so far.
struct Replies {
    expected: usize,
    count: usize,
    json: bool,
    outcome: Outcome,
    progress: Progress,
}

impl Replies {
    /// Prints one line of the answer. Write errors (a closed pipe) are
    /// ignored: the exit status still tells how the sites fared.
    fn line(&mut self, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            return;
        }
        self.progress.clear();
        match serde_json::from_str::<ReplyDocument>(text) {
            Ok(reply) => {
                self.count += 1;
                self.outcome.record(reply.status);
                self.progress.replied(&reply.site);
                let total = self.expected.max(self.count);
                let mut stdout = std::io::stdout().lock();
                let _ = if self.json {
                    writeln!(stdout, "{text}")
                } else {
                    writeln!(stdout, "{}", format_reply(self.count, total, &reply))
                };
                let _ = stdout.flush();
            }
            Err(e) => {
                self.outcome.unreadable();
                eprintln!("cheops: unexpected line in the answer ({e}): {text}");
            }
        }
        self.progress.draw();
    }

    /// `: no reply from site2, site3`, or nothing when every site replied.
    fn unanswered(&self) -> String {
        let waiting = self.progress.waiting();
        if waiting.is_empty() {
            String::new()
        } else {
            format!("; no reply from {}", waiting.join(", "))
        }
    }
}

/// `[i/N] STATUS REQUESTID SITE<TAB>OUTPUT`, the original's format; the
/// output's own final newline is dropped, the rest printed as is.
fn format_reply(index: usize, total: usize, reply: &ReplyDocument) -> String {
    let output = reply.output.strip_suffix('\n').unwrap_or(&reply.output);
    format!(
        "[{index}/{total}] {} {} {}\t{output}",
        reply.status, reply.request_id, reply.site
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cheops_model::Status;

    #[test]
    fn a_reply_prints_on_the_originals_line() {
        let reply = ReplyDocument {
            site: "site2".into(),
            request_id: "3f2a".into(),
            status: Status::Ko,
            output: "line 1\nline 2\n\n".into(),
            ..ReplyDocument::default()
        };
        assert_eq!(
            format_reply(2, 3, &reply),
            "[2/3] KO 3f2a site2\tline 1\nline 2\n"
        );
    }
}
