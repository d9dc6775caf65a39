//! The web console: a single page (`controller/console/*`) served at `/ui` by the admin HTTP
//! server, for operators who look rather than read.
//!
//! The page is a client of the `/v1` API and nothing else: every figure it shows is an answer
//! of the same endpoints curl gets, called from the browser with the token the operator types
//! in (sent as `Authorization: Bearer`), so permissions are exactly the API's. These routes
//! only hand out static bytes compiled into the binary (`include_str!`): no task, no polling and
//! no state on the server, so a console nobody has open costs nothing; an open one costs its
//! polls (every 2 s, paused while its tab is hidden). The assets are public, like
//! `/openapi.json`: they hold no data.
//!
//! Invariant kept by the page (`app.js`): server strings, event payloads included, become text
//! nodes, never markup; a Content-Security-Policy allowing only these same-origin scripts backs
//! that up.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The console's files: path under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../console/app.js")),
    ("history.js", "text/javascript; charset=utf-8", include_str!("../console/history.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../console/style.css")),
];

const INDEX: &str = include_str!("../console/index.html");

/// The path prefix the console is served under; requests to it need no token (see the
/// module header).
pub const PREFIX: &str = "/ui";

/// Routes `/ui` (redirect to `/ui/`), `/ui/` (the page) and `/ui/{file}` (its scripts and
/// style), for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(PREFIX, get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{file}", get(asset))
}

/// Whether `path` is one of the console's (public) paths.
pub fn is_console_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/ui/")
}

async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => page(body, content_type),
        None => (axum::http::StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidated on every load: a newer binary serves newer files at the same paths.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_never_writes_markup_from_strings() {
        for (name, _, body) in ASSETS {
            for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
                assert!(!body.contains(sink), "{name} uses {sink}");
            }
        }
        assert!(INDEX.contains("Content-Security-Policy"));
    }
}
