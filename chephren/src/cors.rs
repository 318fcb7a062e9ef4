//! Which other web origins may read Chephren from a browser. By default
//! none: the UI served by a node talks to that node, same origin. An origin
//! is allowed when the UI is served from elsewhere, or loaded from one node
//! and pointed at another with `?node=` (the original hard-coded one
//! domain). Chephren is read-only (GET). The read token travels in the
//! `Authorization` header, which a page must be allowed to send; cookies
//! and other ambient credentials are never allowed (no
//! `Access-Control-Allow-Credentials`), and never read.

use axum::http::header::{ACCEPT, AUTHORIZATION};
use axum::http::{HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Reads an origin as given on the command line: `*`, or a scheme, a host
/// and an optional port (`http://laptop:8000`). A trailing `/` is dropped,
/// since browsers send origins without one.
pub fn parse_origin(origin: &str) -> Result<String, String> {
    let origin = origin.trim().trim_end_matches('/');
    if origin == "*" {
        return Ok(origin.to_owned());
    }
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("CORS origin {origin:?} must be * or start with http:// or https://")
        })?;
    if host.is_empty()
        || host.contains(['/', '?', '#', '@'])
        || host.contains(char::is_whitespace)
        || HeaderValue::from_str(origin).is_err()
    {
        return Err(format!(
            "CORS origin {origin:?} must be a scheme, a host and an optional port, such as http://laptop:8000"
        ));
    }
    Ok(origin.to_owned())
}

/// The layer allowing `origins` (as [`parse_origin`] returns them); `None`
/// for none, which leaves answers without CORS headers.
pub(crate) fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD])
            .allow_headers([AUTHORIZATION, ACCEPT]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_or_refused_with_a_reason() {
        assert_eq!(parse_origin("*").unwrap(), "*");
        assert_eq!(
            parse_origin(" http://laptop:8000/ ").unwrap(),
            "http://laptop:8000"
        );
        assert_eq!(
            parse_origin("https://ops.example.org").unwrap(),
            "https://ops.example.org"
        );
        for bad in [
            "laptop:8000",
            "ftp://x",
            "http://",
            "http://x/ui",
            "http://u@x",
            "http://x y",
        ] {
            let error = parse_origin(bad).unwrap_err();
            assert!(error.contains("CORS origin"), "{bad:?}: {error}");
        }
    }
}
