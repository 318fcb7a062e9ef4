//! `cheops show`: asks one node to run a read-only command on the sites of a
//! resource and prints what each site answered.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use cheops_model::{error_chain, Secret, SiteOutput};
use reqwest::multipart::{Form, Part};

use super::args::{ShowArgs, ShowKind};
use super::exec;
use super::http;
use super::node_url::{self, redacted};
use super::outcome::Outcome;
use super::{token, Failure};

/// A checked request, ready to send.
pub(crate) struct Request {
    client: reqwest::Client,
    url: String,
    form: Form,
    token: Option<Secret>,
    json: bool,
}

pub(crate) fn prepare(args: ShowArgs) -> Result<Request, Failure> {
    node_url::check_id(&args.id)?;
    let sites = args.sites.as_deref().map(node_url::sites).transpose()?;
    if sites.as_ref().is_some_and(Vec::is_empty) {
        return Err(Failure::Usage(
            "--sites names no site: give sites separated by '&', or leave it out for all the \
             resource's locations"
                .into(),
        ));
    }
    let from = args
        .from
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .or_else(|| sites.as_ref().and_then(|s| s.first()).map(String::as_str));
    if let Some(from) = from {
        cheops_model::check_site_name(from)
            .map_err(|problem| Failure::Usage(format!("--from: {problem}")))?;
    }
    let client = http::client(&args.node)?;
    let url = format!("{}/show/{}", node_url::resolve(&args.node, from)?, args.id);
    let token = token::token(&args.node)?;
    let mut form = match (args.kind, args.command) {
        (Some(kind), _) => kind_form(kind, args.words)?,
        (None, Some(command)) => Form::new().text("command", command),
        (None, None) => {
            return Err(Failure::Usage(
                "give --command, or --kind and its words".into(),
            ))
        }
    };
    if let Some(sites) = args.sites {
        form = form.text("sites", sites);
    }
    Ok(Request {
        client,
        url,
        form,
        token,
        json: args.json,
    })
}

/// The form of an HTTP request (`METHOD PATH ITEMS…`) or a Redis command
/// (`CMD ARG…`).
fn kind_form(kind: ShowKind, words: Vec<String>) -> Result<Form, Failure> {
    let mut words = words.into_iter();
    let (name, (command, fields)) = match kind {
        ShowKind::Http => {
            let (Some(method), Some(path)) = (words.next(), words.next()) else {
                return Err(Failure::Usage(
                    "--kind http takes METHOD PATH, then request items".into(),
                ));
            };
            let items: Vec<String> = words.collect();
            ("http", exec::http_form(&method, &path, &items)?)
        }
        ShowKind::Redis => {
            let Some(command) = words.next() else {
                return Err(Failure::Usage(
                    "--kind redis takes CMD, then its arguments".into(),
                ));
            };
            ("redis", exec::redis_form(command, words.collect())?)
        }
    };
    let mut form = Form::new().text("kind", name).text("command", command);
    for (field, value) in fields {
        form = form.part(field, Part::bytes(value));
    }
    Ok(form)
}

pub(crate) async fn send(request: Request) -> Result<ExitCode, Failure> {
    let response = http::post(
        &request.client,
        &request.url,
        request.form,
        request.token.as_ref(),
    )
    .await?;
    let unreadable = |e: &dyn std::error::Error| {
        Failure::Refused(format!(
            "unexpected answer from {}: {}",
            redacted(&request.url),
            error_chain(e)
        ))
    };
    let body = response
        .text()
        .await
        .map_err(|e| unreadable(&e.without_url()))?;
    let sites: BTreeMap<String, SiteOutput> =
        serde_json::from_str(&body).map_err(|e| unreadable(&e))?;
    let mut outcome = Outcome::default();
    sites.values().for_each(|site| outcome.record(site.status));
    let text = if request.json {
        body.trim_end().to_owned()
    } else {
        render(&sites)
    };
    // A closed pipe is ignored: the exit status still tells how sites fared.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
    Ok(outcome.exit_code())
}

/// One `SITE  STATUS` line per site, names aligned, then its output indented
/// by two spaces (its final newline dropped).
fn render(sites: &BTreeMap<String, SiteOutput>) -> String {
    let width = sites.keys().map(|s| s.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for (site, answer) in sites {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{site:<width$}  {}", answer.status));
        let output = answer.output.strip_suffix('\n').unwrap_or(&answer.output);
        if !output.is_empty() {
            for line in output.split('\n') {
                text.push_str("\n  ");
                text.push_str(line);
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use cheops_model::Status;

    #[test]
    fn each_site_shows_its_status_then_its_output_indented() {
        let sites = BTreeMap::from([
            (
                "site1".to_owned(),
                SiteOutput {
                    status: Status::Ok,
                    output: "a\nb\n".into(),
                },
            ),
            (
                "s2".to_owned(),
                SiteOutput {
                    status: Status::Timeout,
                    output: String::new(),
                },
            ),
        ]);
        assert_eq!(render(&sites), "s2     TIMEOUT\nsite1  OK\n  a\n  b");
    }
}
