//! Talking to the node: one POST of a multipart form or one GET, its
//! answer read line by line, and what the user is told when the node
//! cannot be reached, refuses or breaks off.

use std::time::Duration;

use cheops_model::{error_chain, ErrorBody, Secret};
use futures::StreamExt;
use reqwest::multipart::Form;
use reqwest::StatusCode;

use cheops_replicator::ClientOptions;

use super::args::NodeArgs;
use super::node_url::redacted;
use super::Failure;

/// How long to wait for the node to accept the connection. There is no
/// limit on the answer itself: the node answers `/exec` within its reply
/// timeout, and says which sites were late.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client to talk to the node with, trusting `--ca-file`'s roots: read
/// before anything is sent, so that a bad file is a usage error.
pub(crate) fn client(args: &NodeArgs) -> Result<reqwest::Client, Failure> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        // Below the node's keep-alive: no request on a closing connection.
        .pool_idle_timeout(Duration::from_secs(4))
        .use_rustls_tls();
    if let Some(path) = &args.ca_file {
        let shown = path.display();
        let pem = std::fs::read(path)
            .map_err(|e| Failure::Usage(format!("cannot read --ca-file {shown}: {e}")))?;
        let roots = ClientOptions::roots_from_pem(&pem)
            .map_err(|e| Failure::Usage(format!("--ca-file {shown}: {e}")))?;
        builder = roots
            .into_iter()
            .fold(builder, reqwest::ClientBuilder::add_root_certificate);
    }
    builder
        .build()
        .map_err(|e| Failure::Refused(format!("cannot set up HTTP: {}", error_chain(&e))))
}

/// Posts `form` to `url` with `token`; any answer but a success is a
/// [`Failure::Refused`] carrying the node's own message.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    form: Form,
    token: Option<&Secret>,
) -> Result<reqwest::Response, Failure> {
    send(client.post(url).multipart(form), url, token, "operator").await
}

/// Gets `url` with `token`, which may be the read token; any answer but a
/// success is a [`Failure::Refused`] carrying the node's own message.
pub(crate) async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&Secret>,
) -> Result<reqwest::Response, Failure> {
    send(client.get(url), url, token, "read or operator").await
}

/// Reads the body of the answer of `url` as it comes, handing each line
/// (without its newline) to `line`, which may stop the reading with a
/// failure. A body cut short, or ending in half a line, is a failure.
pub(crate) async fn for_each_line(
    response: reqwest::Response,
    url: &str,
    mut line: impl FnMut(&str) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut body = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| broke_off(url, error_chain(&e.without_url())))?;
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=end).collect();
            line(&String::from_utf8_lossy(&raw[..end]))?;
        }
    }
    if !pending.is_empty() {
        return Err(broke_off(url, "its last line is incomplete"));
    }
    Ok(())
}

/// The answer of `url` stopped, or could not be read, for `reason`.
pub(crate) fn broke_off(url: &str, reason: impl std::fmt::Display) -> Failure {
    Failure::Refused(format!(
        "the answer of {} broke off: {reason}",
        redacted(url)
    ))
}

/// Sends `request`; `needs` names the token the endpoint takes, for the
/// hint of a refusal.
async fn send(
    mut request: reqwest::RequestBuilder,
    url: &str,
    token: Option<&Secret>,
    needs: &str,
) -> Result<reqwest::Response, Failure> {
    if let Some(token) = token {
        request = request.bearer_auth(token.expose());
    }
    let response = request.send().await.map_err(|e| {
        // The message names the URL once, without credentials.
        let e = e.without_url();
        Failure::NotHere(format!(
            "cannot reach {}: {}",
            redacted(url),
            error_chain(&e)
        ))
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&body) {
        Ok(ErrorBody { error }) => error,
        Err(_) if body.trim().is_empty() => "no message".to_owned(),
        Err(_) => body.trim().to_owned(),
    };
    let hint = match (status, token) {
        (StatusCode::UNAUTHORIZED, None) => {
            format!(" (give the {needs} token with --token-file or CHEOPS_TOKEN)")
        }
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, Some(_)) => {
            format!(" (is it this cluster's {needs} token?)")
        }
        _ => String::new(),
    };
    let message = format!("{} answered {status}: {message}{hint}", redacted(url));
    Err(match status {
        StatusCode::GONE => Failure::Gone(message),
        StatusCode::NOT_FOUND => Failure::NotHere(message),
        _ => Failure::Refused(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_args(ca_file: Option<&str>) -> NodeArgs {
        NodeArgs {
            node: None,
            peers: Vec::new(),
            peers_file: None,
            api_template: "https://{site}:8079".into(),
            ca_file: ca_file.map(Into::into),
            token_file: None,
            token: None,
        }
    }

    #[test]
    fn an_unusable_ca_file_is_a_usage_error() {
        let missing = std::env::temp_dir().join("cheops-no-such-ca.pem");
        let failure = client(&node_args(missing.to_str())).unwrap_err();
        assert!(
            matches!(&failure, Failure::Usage(m) if m.starts_with("cannot read --ca-file")),
            "{failure:?}"
        );
        let not_pem = std::env::temp_dir().join(format!("cheops-not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "not PEM").unwrap();
        let failure = client(&node_args(not_pem.to_str())).unwrap_err();
        assert!(
            matches!(&failure, Failure::Usage(m) if m.starts_with("--ca-file")),
            "{failure:?}"
        );
        let _ = std::fs::remove_file(not_pem);
        assert!(client(&node_args(None)).is_ok());
    }
}
