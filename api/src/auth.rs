//! Bearer-token authentication of the node's listeners (API, dump,
//! Chephren), as the kubelet guards its `exec` endpoint and CouchDB 3 its
//! databases with `require_valid_user`: no token, 401; a token that does
//! not grant the endpoint, 403.
//!
//! Three tokens, each optional except that the two others need the
//! operator's:
//!
//! - the **operator** token grants everything: `/exec`, `/show`,
//!   `/show_local`, `/history`, `/metrics`, Chephren's API and the dump;
//! - the **read** token grants what only reads: `/history`, `/metrics`,
//!   Chephren's API and the dump;
//! - the **node** token is what nodes send each other (`/show` calls every
//!   site's `/show_local` with it) and grants `/show_local` only. A node
//!   with no node token sends its operator token instead, so the simplest
//!   cluster shares one operator token.
//!
//! Only the `Authorization: Bearer` header counts: no cookie, query
//! parameter or Basic credential is ever read, so a web page cannot make a
//! browser send an ambient credential (a form POST from another site
//! carries no bearer token). With no operator token configured every
//! request passes (the daemon then listens on loopback only, or was told
//! `--insecure`), except one that a browser sends on a web page's behalf to
//! an endpoint that runs commands, and, on loopback, one addressed to a
//! name that is not loopback's: a page whose name an attacker's DNS points
//! at 127.0.0.1 (DNS rebinding) is refused before anything is read.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, ORIGIN, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use blake2::{Blake2b512, Digest};
use cheops_model::ErrorBody;
use subtle::ConstantTimeEq;

pub use cheops_model::{Secret, MIN_TOKEN_LEN};

/// What a valid token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Operator,
    Read,
    Node,
}

/// What an endpoint asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only: the read token or the operator's.
    Read,
    /// A node's call to another (`/show_local`): the node token or the
    /// operator's.
    Node,
    /// Runs or stores commands: the operator token only.
    Operator,
}

impl Access {
    fn granted_to(self, role: Role) -> bool {
        matches!(
            (self, role),
            (_, Role::Operator) | (Access::Read, Role::Read) | (Access::Node, Role::Node)
        )
    }
}

/// The tokens a node accepts, and the one it sends to its peers.
#[derive(Clone, Default)]
pub struct Tokens {
    operator: Option<Secret>,
    read: Option<Secret>,
    node: Option<Secret>,
    /// Digests of the accepted tokens, by role, compared in constant time.
    digests: Vec<(Role, [u8; 64])>,
    /// Without tokens, whether any `Host` is answered (`--insecure`), or
    /// only loopback names.
    any_host: bool,
}

impl Tokens {
    /// No token: every request passes.
    pub fn open() -> Tokens {
        Tokens::default()
    }

    /// The tokens configured; a read or node token needs an operator token
    /// (else the endpoints that run commands would be the open ones), and
    /// no two may be equal (a read token equal to the operator's would grant
    /// everything).
    pub fn new(
        operator: Option<Secret>,
        read: Option<Secret>,
        node: Option<Secret>,
    ) -> Result<Tokens, String> {
        if operator.is_none() && (read.is_some() || node.is_some()) {
            return Err(
                "a read or node token needs an operator token too (--token-file or CHEOPS_TOKEN)"
                    .into(),
            );
        }
        let roles = [
            (Role::Operator, &operator),
            (Role::Read, &read),
            (Role::Node, &node),
        ];
        let digests: Vec<(Role, [u8; 64])> = roles
            .iter()
            .filter_map(|(role, secret)| secret.as_ref().map(|s| (*role, digest(s.expose()))))
            .collect();
        for (i, (_, a)) in digests.iter().enumerate() {
            if digests[i + 1..].iter().any(|(_, b)| a == b) {
                return Err("the operator, read and node tokens must all differ".into());
            }
        }
        Ok(Tokens {
            operator,
            read,
            node,
            digests,
            any_host: false,
        })
    }

    /// Without tokens, answers requests addressed to any name, not only
    /// loopback's: the node was told `--insecure`.
    pub fn answering_any_host(self) -> Tokens {
        Tokens {
            any_host: true,
            ..self
        }
    }

    /// Whether a request addressed to `host` (its `Host`, or the
    /// authority of an HTTP/2 request) may be answered.
    pub fn check_host(&self, host: Option<&str>) -> Result<(), Refusal> {
        match host {
            Some(host) if !self.enabled() && !self.any_host && !is_loopback_name(host) => {
                Err(Refusal::ForeignHost)
            }
            _ => Ok(()),
        }
    }

    /// Whether requests are checked at all.
    pub fn enabled(&self) -> bool {
        self.operator.is_some()
    }

    pub fn operator(&self) -> Option<&Secret> {
        self.operator.as_ref()
    }

    pub fn read(&self) -> Option<&Secret> {
        self.read.as_ref()
    }

    /// What this node sends to its peers' `/show_local`: its node token,
    /// else its operator token.
    pub fn for_peers(&self) -> Option<&Secret> {
        self.node.as_ref().or(self.operator.as_ref())
    }

    /// The role of a presented token, if it is one of ours. Every accepted
    /// token is compared, and each comparison takes the same time whatever
    /// the bytes: digests of equal length compared with `subtle`, so
    /// neither the content nor the length of a token leaks through timing.
    fn role_of(&self, presented: &str) -> Option<Role> {
        let presented = digest(presented);
        let mut found = None;
        for (role, expected) in &self.digests {
            if bool::from(presented.ct_eq(expected)) {
                found = Some(*role);
            }
        }
        found
    }

    /// Whether `request` grants `access`: `Err` is the answer to send.
    pub fn check_request(&self, request: &Request, access: Access) -> Result<(), Refusal> {
        self.check_host(host_of(request))?;
        self.check(request.headers(), access)
    }

    /// Whether `headers` grant `access`: `Err` is the answer to send.
    pub fn check(&self, headers: &HeaderMap, access: Access) -> Result<(), Refusal> {
        if !self.enabled() {
            return match access {
                Access::Read => Ok(()),
                Access::Node | Access::Operator if from_a_browser(headers) => {
                    Err(Refusal::FromBrowser)
                }
                Access::Node | Access::Operator => Ok(()),
            };
        }
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(Refusal::Missing);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(Refusal::Missing)?;
        match self.role_of(token) {
            None => Err(Refusal::Invalid),
            Some(role) if access.granted_to(role) => Ok(()),
            Some(_) => Err(Refusal::Forbidden(access)),
        }
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("operator", &self.operator.is_some())
            .field("read", &self.read.is_some())
            .field("node", &self.node.is_some())
            .finish()
    }
}

/// Whether a browser sent this request on a page's behalf: browsers name
/// the page's origin (`Origin`, on every POST) and where the request comes
/// from (`Sec-Fetch-Site`); the CLI, curl and other nodes send neither.
/// Without tokens, that is all that stops any web page the operator opens
/// from posting a form to `/show_local` on 127.0.0.1 (no preflight needed).
fn from_a_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(ORIGIN)
        || headers
            .get("sec-fetch-site")
            .is_some_and(|site| site != "none")
}

/// The name a request is addressed to: its `Host`, else the authority of
/// its URI (HTTP/2 carries it there).
pub fn host_of(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
}

/// Whether `host` (with or without its port) names this machine's loopback:
/// `localhost` and its subdomains, `127.0.0.0/8`, `[::1]`.
fn is_loopback_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        },
    };
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || lower
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn digest(token: &str) -> [u8; 64] {
    Blake2b512::digest(token.as_bytes()).into()
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header (or several).
    Missing,
    /// A bearer token that is none of ours.
    Invalid,
    /// A valid token that does not grant this endpoint.
    Forbidden(Access),
    /// A page in a browser calling a node that has no token.
    FromBrowser,
    /// A request to a node without tokens addressed to a name that is not
    /// loopback's.
    ForeignHost,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, challenge, message) = match self {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                r#"Bearer realm="cheops""#,
                "authentication required: send Authorization: Bearer TOKEN",
            ),
            Refusal::Invalid => (
                StatusCode::UNAUTHORIZED,
                r#"Bearer realm="cheops", error="invalid_token""#,
                "the bearer token is not valid here",
            ),
            Refusal::Forbidden(access) => (
                StatusCode::FORBIDDEN,
                r#"Bearer realm="cheops", error="insufficient_scope""#,
                match access {
                    Access::Operator => "this endpoint needs the operator token",
                    Access::Node => "this endpoint needs the operator or node token",
                    Access::Read => "this endpoint needs the read or operator token",
                },
            ),
            Refusal::FromBrowser => (
                StatusCode::FORBIDDEN,
                r#"Bearer realm="cheops""#,
                "a node without tokens refuses requests from web pages: configure a token",
            ),
            Refusal::ForeignHost => (
                StatusCode::FORBIDDEN,
                r#"Bearer realm="cheops""#,
                "a node without tokens answers requests to localhost, 127.0.0.1 or [::1] only: \
                 configure a token",
            ),
        };
        // The presented token is never logged, only the verdict.
        tracing::info!(status = status.as_u16(), error = message, "request refused");
        (
            status,
            [(WWW_AUTHENTICATE, challenge)],
            Json(ErrorBody::new(message)),
        )
            .into_response()
    }
}

/// What the middleware knows: which tokens, and what the routes ask.
#[derive(Clone)]
struct Guard {
    tokens: Arc<Tokens>,
    access: Access,
}

/// `router`'s routes, refusing requests that do not grant `access`. Only
/// the routes already added are guarded (`Router::route_layer`): unknown
/// paths still answer 404, and routes added afterwards stay open.
pub fn guarded<S>(router: Router<S>, tokens: Arc<Tokens>, access: Access) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.route_layer(from_fn_with_state(Guard { tokens, access }, guard))
}

async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match guard.tokens.check_request(&request, guard.access) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn without_tokens_only_loopback_names_are_answered() {
        let open = Tokens::open();
        for host in [
            "localhost",
            "LOCALHOST:8079",
            "app.localhost:80",
            "127.0.0.1:8079",
            "127.1.2.3",
            "[::1]:8079",
            "localhost.",
        ] {
            assert_eq!(open.check_host(Some(host)), Ok(()), "{host}");
        }
        for host in [
            "attacker.example:8079",
            "localhost.attacker.example",
            "10.0.0.1:8079",
            "[::2]",
            "127.0.0.1.nip.io",
        ] {
            assert_eq!(
                open.check_host(Some(host)),
                Err(Refusal::ForeignHost),
                "{host}"
            );
            assert_eq!(
                open.clone().answering_any_host().check_host(Some(host)),
                Ok(())
            );
            assert_eq!(tokens().check_host(Some(host)), Ok(()), "tokens decide");
        }
        assert_eq!(open.check_host(None), Ok(()));
    }

    fn secret(s: &str) -> Secret {
        Secret::new(s).unwrap()
    }

    fn tokens() -> Tokens {
        Tokens::new(
            Some(secret("operator-token-0123")),
            Some(secret("read-token-0123456")),
            Some(secret("node-token-0123456")),
        )
        .unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn each_token_grants_its_endpoints_and_no_other() {
        let tokens = tokens();
        let check = |value: &str, access| tokens.check(&headers(value), access);
        for access in [Access::Read, Access::Node, Access::Operator] {
            assert_eq!(check("Bearer operator-token-0123", access), Ok(()));
        }
        assert_eq!(check("bearer read-token-0123456", Access::Read), Ok(()));
        assert_eq!(check("Bearer node-token-0123456", Access::Node), Ok(()));
        assert_eq!(
            check("Bearer read-token-0123456", Access::Operator),
            Err(Refusal::Forbidden(Access::Operator))
        );
        assert_eq!(
            check("Bearer read-token-0123456", Access::Node),
            Err(Refusal::Forbidden(Access::Node))
        );
        assert_eq!(
            check("Bearer node-token-0123456", Access::Read),
            Err(Refusal::Forbidden(Access::Read))
        );
        assert_eq!(
            check("Bearer node-token-0123456", Access::Operator),
            Err(Refusal::Forbidden(Access::Operator))
        );
    }

    #[test]
    fn only_a_bearer_header_counts() {
        let tokens = tokens();
        assert_eq!(
            tokens.check(&HeaderMap::new(), Access::Read),
            Err(Refusal::Missing)
        );
        for value in [
            "operator-token-0123",
            "Basic b3BlcmF0b3ItdG9rZW4tMDEyMw==",
            "Token operator-token-0123",
        ] {
            assert_eq!(
                tokens.check(&headers(value), Access::Read),
                Err(Refusal::Missing),
                "{value}"
            );
        }
        let mut cookie = HeaderMap::new();
        cookie.insert(
            "cookie",
            HeaderValue::from_static("token=operator-token-0123"),
        );
        assert_eq!(tokens.check(&cookie, Access::Read), Err(Refusal::Missing));
        assert_eq!(
            tokens.check(&headers("Bearer operator-token-012"), Access::Read),
            Err(Refusal::Invalid)
        );
        let mut twice = headers("Bearer operator-token-0123");
        twice.append(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer operator-token-0123"),
        );
        assert_eq!(tokens.check(&twice, Access::Read), Err(Refusal::Missing));
    }

    #[test]
    fn without_an_operator_token_everything_passes_but_web_pages() {
        let open = Tokens::open();
        for access in [Access::Read, Access::Node, Access::Operator] {
            assert_eq!(open.check(&HeaderMap::new(), access), Ok(()));
        }
        let mut page = HeaderMap::new();
        page.insert(ORIGIN, HeaderValue::from_static("http://evil.example"));
        let mut fetched = HeaderMap::new();
        fetched.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        for headers in [&page, &fetched] {
            assert_eq!(
                open.check(headers, Access::Operator),
                Err(Refusal::FromBrowser)
            );
            assert_eq!(open.check(headers, Access::Node), Err(Refusal::FromBrowser));
            // Chephren's own page reads its node, same origin or not.
            assert_eq!(open.check(headers, Access::Read), Ok(()));
        }
        let mut typed = HeaderMap::new();
        typed.insert("sec-fetch-site", HeaderValue::from_static("none"));
        assert_eq!(open.check(&typed, Access::Operator), Ok(()));
    }

    #[test]
    fn token_sets_are_checked_and_never_shown() {
        let secret = secret("long-enough-token-1");
        assert!(!format!("{:?}", tokens()).contains("token-0123"));
        assert!(Tokens::new(None, Some(secret.clone()), None).is_err());
        assert!(Tokens::new(Some(secret.clone()), Some(secret), None).is_err());
    }
}
