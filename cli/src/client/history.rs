//! `cheops history`: every operation ever accepted for a resource, oldest
//! first, printed line by line as the node streams them.

use std::io::Write;
use std::process::ExitCode;

use cheops_model::{HistoryEntry, Secret};

use super::args::HistoryArgs;
use super::http;
use super::node_url;
use super::{token, Failure};

/// The longest command shown on a human line, in characters.
const COMMAND_WIDTH: usize = 60;

/// A checked request, ready to send.
pub(crate) struct Request {
    client: reqwest::Client,
    /// The history's URL on each site to ask, in turn.
    urls: Vec<String>,
    id: String,
    token: Option<Secret>,
    json: bool,
}

/// Asks `--node`, or the site `--from` names; without either, each site
/// that `--peer` and `--peers-file` name in turn, until one holds the
/// resource.
pub(crate) fn prepare(args: HistoryArgs) -> Result<Request, Failure> {
    node_url::check_id(&args.id)?;
    let client = http::client(&args.node)?;
    let from = args
        .from
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty());
    let named = from.is_some()
        || args
            .node
            .node
            .as_deref()
            .is_some_and(|n| !n.trim().is_empty());
    let bases = if named {
        vec![node_url::one_node(&args.node, from)?]
    } else {
        let sites = node_url::known_sites(&args.node)?;
        if sites.is_empty() {
            return Err(Failure::Usage(
                "say which node to ask: --node or --from (or name the sites with --peer or \
                 --peers-file, asked in turn)"
                    .into(),
            ));
        }
        sites
            .iter()
            .map(|site| node_url::resolve(&args.node, Some(site)))
            .collect::<Result<_, _>>()?
    };
    let query = if args.files { "?files=true" } else { "" };
    let urls = bases
        .iter()
        .map(|base| format!("{base}/history/{}{query}", args.id))
        .collect();
    Ok(Request {
        client,
        urls,
        id: args.id,
        token: token::token(&args.node)?,
        json: args.json,
    })
}

pub(crate) async fn send(request: Request) -> Result<ExitCode, Failure> {
    let mut missed = Vec::new();
    let mut answered = None;
    for url in &request.urls {
        match http::get(&request.client, url, request.token.as_ref()).await {
            Ok(response) => {
                answered = Some((url, response));
                break;
            }
            Err(Failure::NotHere(why)) if request.urls.len() > 1 => missed.push(why),
            Err(failure) => return Err(failure),
        }
    }
    let Some((url, response)) = answered else {
        return Err(Failure::NotHere(format!(
            "no site asked holds {}: {}",
            request.id,
            missed.join("; ")
        )));
    };
    // A closed pipe is ignored: the history is read to the end all the same.
    let mut stdout = std::io::stdout().lock();
    http::for_each_line(response, url, |line| {
        let text = if request.json {
            line.to_owned()
        } else {
            let entry: HistoryEntry =
                serde_json::from_str(line).map_err(|e| http::broke_off(url, e))?;
            render(&entry)
        };
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
        Ok(())
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `TIME  REQUESTID  TYPE  COMMAND  SITE=STATUS…`, the command cut to its
/// first line, each site's latest status with `×N` when it ran the
/// operation N > 1 times.
fn render(entry: &HistoryEntry) -> String {
    let mut sites: Vec<(&str, String, usize)> = Vec::new();
    for reply in &entry.replies {
        match sites.iter_mut().find(|(site, _, _)| *site == reply.site) {
            // Replies are oldest first: the last one is the latest.
            Some(seen) => {
                seen.1 = reply.status.to_string();
                seen.2 += 1;
            }
            None => sites.push((&reply.site, reply.status.to_string(), 1)),
        }
    }
    sites.sort();
    let replies = if sites.is_empty() {
        "(no reply yet)".to_owned()
    } else {
        sites
            .iter()
            .map(|(site, status, runs)| match runs {
                1 => format!("{site}={status}"),
                n => format!("{site}={status}×{n}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let command = if entry.pruned && entry.command.is_empty() {
        "(pruned)".to_owned()
    } else {
        one_line(&entry.command)
    };
    let block = if entry.in_block { "  (in block)" } else { "" };
    format!(
        "{}  {}  {}  {command}  {replies}{block}",
        entry.time, entry.request_id, entry.op_type
    )
}

/// The first line of `command`, at most [`COMMAND_WIDTH`] characters, `…`
/// marking what was cut.
fn one_line(command: &str) -> String {
    let first = command.lines().next().unwrap_or_default();
    let mut shown: String = first.chars().take(COMMAND_WIDTH).collect();
    if shown.len() < command.len() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use cheops_model::{HistoryReply, Status};

    fn reply(site: &str, status: Status, time: &str) -> HistoryReply {
        HistoryReply {
            site: site.into(),
            status,
            execution_time: time.parse().unwrap(),
            ..HistoryReply::default()
        }
    }

    #[test]
    fn a_line_gives_each_sites_latest_status_and_reruns() {
        let entry = HistoryEntry {
            op_type: "add".into(),
            request_id: "r1".into(),
            time: "2024-03-05T14:07:09.5+01:00".parse().unwrap(),
            command: "echo one\necho two".into(),
            in_block: true,
            replies: vec![
                reply("s2", Status::Ok, "2024-03-05T13:07:10Z"),
                reply("s1", Status::Ko, "2024-03-05T13:07:11Z"),
                reply("s2", Status::Ko, "2024-03-05T13:07:12Z"),
            ],
            ..HistoryEntry::default()
        };
        assert_eq!(
            render(&entry),
            "2024-03-05T14:07:09.5+01:00  r1  add  echo one…  s1=KO s2=KO×2  (in block)"
        );
    }

    #[test]
    fn a_pruned_copy_and_a_silent_operation_say_so() {
        let entry = HistoryEntry {
            op_type: "set".into(),
            request_id: "r2".into(),
            pruned: true,
            ..HistoryEntry::default()
        };
        assert_eq!(
            render(&entry),
            "0001-01-01T00:00:00Z  r2  set  (pruned)  (no reply yet)"
        );
        assert_eq!(one_line(&"x".repeat(61)), format!("{}…", "x".repeat(60)));
        assert_eq!(one_line("short"), "short");
    }
}
