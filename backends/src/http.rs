//! The HTTP backend: an operation's request sent to this site's own
//! application, at the base URL the operator gave (`--http-backend`). OK
//! for a 2xx answer; the output is the status line and the body, cut as a
//! shell command's output is.

use std::time::Duration;

use cheops_model::{Command, HttpRequest};
use reqwest::{Method, Url};
use tracing::info;

use crate::output::capped;
use crate::{BackendError, CommandFuture, CommandResult, Outcome, Run};

/// Sends operations' requests to one application.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    /// The application's URL; a request's path goes after it.
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
    output_limit: usize,
}

impl HttpBackend {
    /// A backend for the application at `base` (`http://127.0.0.1:8000` or
    /// `https://app.internal/api`), through `http`, each request given
    /// `timeout` and its output cut at `output_limit` bytes.
    pub fn new(
        base: &str,
        http: reqwest::Client,
        timeout: Duration,
        output_limit: usize,
    ) -> Result<HttpBackend, String> {
        let base = Url::parse(base).map_err(|e| format!("{base:?} is not a URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(format!("{base} is not an http:// or https:// URL"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(format!(
                "{base} has a query or a fragment: give the application's base URL"
            ));
        }
        Ok(HttpBackend {
            base,
            http,
            timeout,
            output_limit,
        })
    }

    /// The URL `request` goes to: the base URL, then the request's path
    /// (a path, never a URL of its own: it cannot leave the application).
    fn url(&self, request: &HttpRequest) -> Result<Url, BackendError> {
        if !request.path.starts_with('/') {
            return Err(BackendError::Refused(format!(
                "the path {:?} does not start with /",
                request.path
            )));
        }
        let base = self.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{}", request.path))
            .map_err(|e| BackendError::Refused(format!("the path {:?}: {e}", request.path)))
    }

    async fn send(&self, command: &Command) -> Result<CommandResult, BackendError> {
        let request = command
            .http
            .as_ref()
            .ok_or_else(|| BackendError::Refused("an http operation without its request".into()))?;
        let method = Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            BackendError::Refused(format!("{:?} is not an HTTP method", request.method))
        })?;
        let mut builder = self
            .http
            .request(method, self.url(request)?)
            .timeout(self.timeout)
            .body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let answer = match builder.send().await {
            Ok(answer) => answer,
            Err(error) => {
                let error = error.without_url();
                info!(%error, "the application did not answer");
                return Ok(CommandResult {
                    outcome: Outcome::Failed,
                    output: format!("the application did not answer: {error}"),
                });
            }
        };
        let status = answer.status();
        let status_line = format!("{:?} {}", answer.version(), status);
        let body = answer.bytes().await.unwrap_or_default();
        info!(%status, "request sent");
        let output = format!("{status_line}\n\n{}", String::from_utf8_lossy(&body));
        Ok(CommandResult {
            outcome: if status.is_success() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            output: capped(output, self.output_limit),
        })
    }
}

impl Run for HttpBackend {
    fn run_one<'a>(&'a self, command: &'a Command) -> CommandFuture<'a> {
        Box::pin(async move {
            self.send(command)
                .await
                .unwrap_or_else(|error| CommandResult::not_run(&error))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An application answering each request with `status` and its own
    /// request line and body echoed; returns its base URL.
    async fn application(status: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/app", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = vec![0; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]).into_owned();
                let line = request.lines().next().unwrap_or_default().to_owned();
                let body = request.split("\r\n\r\n").nth(1).unwrap_or_default();
                let answer = format!("{line} {body}");
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        url
    }

    fn backend(base: &str) -> HttpBackend {
        HttpBackend::new(base, reqwest::Client::new(), Duration::from_secs(5), 1024).unwrap()
    }

    fn request(method: &str, path: &str, body: &str) -> Command {
        Command::http(HttpRequest {
            method: method.into(),
            path: path.into(),
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        })
    }

    #[tokio::test]
    async fn a_request_goes_below_the_base_url_and_2xx_is_ok() {
        let base = application("201 Created").await;
        let result = backend(&base)
            .run_one(&request("PUT", "/items/1?x=2", "hello"))
            .await;
        assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
        assert_eq!(
            result.output,
            "HTTP/1.1 201 Created\n\nPUT /app/items/1?x=2 HTTP/1.1 hello"
        );
    }

    #[tokio::test]
    async fn another_status_a_bad_path_or_no_application_is_ko() {
        let base = application("409 Conflict").await;
        let refused = backend(&base).run_one(&request("POST", "/x", "")).await;
        assert_eq!(refused.outcome, Outcome::Failed);
        assert!(
            refused.output.starts_with("HTTP/1.1 409 Conflict"),
            "{refused:?}"
        );
        let bad = backend(&base)
            .run_one(&request("GET", "http://elsewhere/", ""))
            .await;
        assert!(bad.output.contains("does not start with /"), "{bad:?}");
        let gone = backend("http://127.0.0.1:9")
            .run_one(&request("GET", "/", ""))
            .await;
        assert_eq!(gone.outcome, Outcome::Failed);
        assert!(
            gone.output.starts_with("the application did not answer"),
            "{gone:?}"
        );
        assert!(HttpBackend::new("ftp://x", reqwest::Client::new(), Duration::ZERO, 1).is_err());
    }
}
