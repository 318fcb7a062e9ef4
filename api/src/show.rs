//! `POST /show/{id}` and `POST /show_local/{id}`: read-only commands run on
//! every site of a resource (or on this node), neither stored nor
//! replicated.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use cheops_model::{error_chain, Command, SiteOutput, Status};
use tokio::time::Instant;

use crate::form::AnyForm;
use crate::resource_id::ResourceId;
use crate::{ApiError, AppState};

/// The placeholder in a show command that stands for the resource id.
const ID_PLACEHOLDER: &str = "__ID__";

pub(crate) async fn show(
    State(state): State<AppState>,
    ResourceId(id): ResourceId,
    AnyForm(form): AnyForm,
) -> Result<Json<BTreeMap<String, SiteOutput>>, ApiError> {
    let command = form.required("command")?.to_owned();
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
                None => return Ok(run_here(state, id, &command).await),
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
async fn ask(state: &AppState, url: String, command: String) -> Result<SiteOutput, String> {
    let form = reqwest::multipart::Form::new().text("command", command);
    let mut request = state.client.post(&url).multipart(form);
    if let Some(token) = state.config.tokens.for_peers() {
        request = request.bearer_auth(token.expose());
    }
    let response = request.send().await.map_err(|e| {
        if e.is_connect() {
            format!("unreachable: {}", error_chain(&e))
        } else {
            format!("request failed: {}", error_chain(&e))
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("answered {status}: {}", body.trim()));
    }
    response
        .json::<SiteOutput>()
        .await
        .map_err(|e| format!("unexpected answer: {}", error_chain(&e)))
}

pub(crate) async fn show_local(
    State(state): State<AppState>,
    ResourceId(id): ResourceId,
    AnyForm(form): AnyForm,
) -> Result<Json<SiteOutput>, ApiError> {
    let command = form.required("command")?;
    Ok(Json(run_here(&state, &id, command).await))
}

/// Runs a show command on this node, `__ID__` standing for the resource id.
async fn run_here(state: &AppState, id: &str, command: &str) -> SiteOutput {
    let result = state
        .node
        .run_local(Command::shell(command.replace(ID_PLACEHOLDER, id)))
        .await;
    SiteOutput {
        status: result.status(),
        output: result.output,
    }
}
