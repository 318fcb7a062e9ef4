//! `POST /show/{id}` and `POST /show_local/{id}`: read-only commands of any
//! kind run on every site of a resource (or on this node), neither stored
//! nor replicated.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use cheops_model::{error_chain, Command, SiteOutput, Status};
use reqwest::multipart::Form;
use tokio::time::Instant;

use crate::command_form::{self, Files};
use crate::form::AnyForm;
use crate::resource_id::ResourceId;
use crate::{ApiError, AppState};

/// The placeholder in a show command that stands for the resource id.
const ID_PLACEHOLDER: &str = "__ID__";

/// The `/show_local` field that carries a command of another kind than
/// shell, whole, as operations store it. Its `command` field then holds
/// the line a node running shell commands only (the Go original) runs,
/// which answers KO saying why.
const COMMAND_JSON: &str = "command-json";

pub(crate) async fn show(
    State(state): State<AppState>,
    ResourceId(id): ResourceId,
    AnyForm(form): AnyForm,
) -> Result<Json<BTreeMap<String, SiteOutput>>, ApiError> {
    let command = command_form::parse(&form, Files::Refused)?;
    let given = form.sites()?.filter(|s| !s.is_empty());
    let sites = match &given {
        Some(sites) => sites.clone(),
        None => state
            .node
            .locations(&id)
            .await?
            .ok_or_else(|| ApiError::ResourceNotFound(id.clone()))?,
    };
    // Where each other site is asked, or why it cannot be. A request naming
    // a site the operator did not configure is refused as a whole; such a
    // location of a resource (stored by a node configured otherwise) is KO.
    let mut urls = BTreeMap::new();
    for site in sites.iter().filter(|s| *s != state.node.site()) {
        let base = state.node.api_url(site);
        if let (Some(_), Err(reason)) = (&given, &base) {
            return Err(ApiError::BadRequest(reason.clone()));
        }
        urls.insert(site.clone(), base);
    }
    let deadline = Instant::now() + state.config.show_timeout;
    let (id, state, urls) = (&id, &state, &urls);
    let asks = sites.iter().map(|site| {
        let command = command.clone();
        // This node runs its own share directly: no HTTP hop to itself.
        let ask = async move {
            let base = match urls.get(site) {
                None => return Ok(run_here(state, id, command).await),
                Some(base) => base.clone()?,
            };
            let url = format!("{}/show_local/{id}", base.trim_end_matches('/'));
            ask(state, url, command).await
        };
        async move {
            let output = match tokio::time::timeout_at(deadline, ask).await {
                Ok(Ok(output)) => output,
                Ok(Err(reason)) => {
                    tracing::info!(resource = %id, site = %site, %reason, "show failed on a site");
                    SiteOutput {
                        status: Status::Ko,
                        output: reason,
                    }
                }
                Err(_) => SiteOutput {
                    status: Status::Timeout,
                    output: format!("no answer within {:?}", state.config.show_timeout),
                },
            };
            (site.clone(), output)
        }
    });
    let outputs = futures::future::join_all(asks).await;
    Ok(Json(outputs.into_iter().collect()))
}

/// Runs the command on one site through its `/show_local`, with this
/// node's token for its peers; the error is the reason to report.
async fn ask(state: &AppState, url: String, command: Command) -> Result<SiteOutput, String> {
    let mut form = Form::new().text("command", command.command.clone());
    if !command.kind.is_shell() {
        let json = serde_json::to_string(&command)
            .map_err(|e| format!("cannot encode the command: {e}"))?;
        form = form.text(COMMAND_JSON, json);
    }
    let mut request = state.client.post(&url).multipart(form);
    if let Some(token) = state.config.tokens.for_peers() {
        request = request.bearer_auth(token.expose());
    }
    let mut response = request.send().await.map_err(|e| {
        if e.is_connect() {
            format!("unreachable: {}", error_chain(&e))
        } else {
            format!("request failed: {}", error_chain(&e))
        }
    })?;
    let status = response.status();
    let limit = state.config.peer_answer_limit;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("answer cut short: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!(
                "answered {status} with more than {limit} bytes, more than a command's output takes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let body = String::from_utf8_lossy(&body);
        return Err(format!("answered {status}: {}", body.trim()));
    }
    serde_json::from_slice::<SiteOutput>(&body)
        .map_err(|e| format!("unexpected answer: {}", error_chain(&e)))
}

pub(crate) async fn show_local(
    State(state): State<AppState>,
    ResourceId(id): ResourceId,
    AnyForm(form): AnyForm,
) -> Result<Json<SiteOutput>, ApiError> {
    let command = match form.optional(COMMAND_JSON)? {
        Some(json) => serde_json::from_str::<Command>(json).map_err(|e| {
            ApiError::BadRequest(format!("field `{COMMAND_JSON}` is not a command: {e}"))
        })?,
        None => command_form::parse(&form, Files::Refused)?,
    };
    if !command.files.is_empty() {
        return Err(ApiError::bad_request("a shown command takes no files"));
    }
    Ok(Json(run_here(&state, &id, command).await))
}

/// Runs a show command on this node, `__ID__` standing for the resource id.
async fn run_here(state: &AppState, id: &str, command: Command) -> SiteOutput {
    let result = state.node.run_local(with_id(command, id)).await;
    SiteOutput {
        status: result.status(),
        output: result.output,
    }
}

/// The command with `__ID__` replaced by the resource id in its shell line,
/// its HTTP path and header values, and its Redis arguments.
fn with_id(mut command: Command, id: &str) -> Command {
    let replace = |text: &mut String| {
        if text.contains(ID_PLACEHOLDER) {
            *text = text.replace(ID_PLACEHOLDER, id);
        }
    };
    replace(&mut command.command);
    if let Some(request) = &mut command.http {
        replace(&mut request.path);
        request
            .headers
            .iter_mut()
            .for_each(|(_, value)| replace(value));
    }
    command.redis.iter_mut().for_each(replace);
    command
}

#[cfg(test)]
mod tests {
    use super::*;
    use cheops_model::HttpRequest;

    #[test]
    fn the_id_stands_for_its_placeholder_in_every_kind() {
        let shell = with_id(Command::shell("kubectl get deploy __ID__"), "web");
        assert_eq!(shell.command, "kubectl get deploy web");
        let http = with_id(
            Command::http(HttpRequest {
                method: "GET".into(),
                path: "/items/__ID__?full=1".into(),
                headers: vec![("X-Resource".into(), "__ID__".into())],
                body: b"__ID__".to_vec(),
            }),
            "web",
        );
        let request = http.http.expect("a request");
        assert_eq!(request.path, "/items/web?full=1");
        assert_eq!(request.headers[0].1, "web");
        assert_eq!(request.body, b"__ID__", "the body is sent as given");
        let redis = with_id(Command::redis(vec!["GET".into(), "__ID__".into()]), "web");
        assert_eq!(redis.redis, ["GET", "web"]);
    }
}
