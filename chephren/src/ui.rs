//! The web UI (`chephren-ui/`), embedded in the binary so that a node
//! serves it with nothing else installed: plain HTML, CSS and ES modules,
//! no build step. Served at `/`; the UI then reads the API beside it.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// One file of the UI, by the path it is served at.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_str!(concat!("../../chephren-ui/", $file)),
        }
    };
}

/// Every file of `chephren-ui/` (a test checks that none is missing).
const ASSETS: &[Asset] = &[
    asset!("/", "index.html", HTML),
    asset!("/style.css", "style.css", CSS),
    asset!("/app.js", "app.js", JS),
    asset!("/api.js", "api.js", JS),
    asset!("/dom.js", "dom.js", JS),
    asset!("/views/cluster.js", "views/cluster.js", JS),
    asset!("/views/resources.js", "views/resources.js", JS),
    asset!("/views/resource.js", "views/resource.js", JS),
];

/// The UI's routes. `no-cache`: a browser revalidates, so an upgraded node
/// never runs a stale mix of old and new modules.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(
            asset.path,
            get(move || async move {
                (
                    [
                        (CONTENT_TYPE, asset.content_type),
                        (CACHE_CONTROL, "no-cache"),
                    ],
                    asset.body,
                )
                    .into_response()
            }),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn files_under(dir: &Path, root: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(&path, root, found);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                found.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_of_the_ui_is_served() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../chephren-ui");
        let mut files = Vec::new();
        files_under(&root, &root, &mut files);
        for file in files {
            let path = if file == "index.html" {
                "/".to_owned()
            } else {
                format!("/{file}")
            };
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "chephren-ui/{file} is not in ASSETS, so the binary would not serve it"
            );
        }
    }
}
