//! The web view (`/ui/`, issue 19, docs/design/0009-web-view.md): three hand-written files
//! (HTML, JavaScript, CSS) compiled into the binary and served as they are.
//!
//! * The files hold no data, so they are served without authentication, like `/version`;
//!   every piece of data the page shows comes from the ordinary API, called by the page
//!   with the user's bearer token, so authentication, RBAC, flow control and audit apply
//!   unchanged.
//! * A request names one file of a fixed table (no file system, no path joining: nothing to
//!   traverse); anything else under `/ui/` is a 404 Status, a method other than GET/HEAD a
//!   405. Responses carry an ETag (revalidated: `no-cache`), a Content-Security-Policy that
//!   allows only this origin (no inline script, no remote anything) and `nosniff`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use crate::error::ApiError;

/// One embedded file: its name under `/ui/`, its media type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../ui/index.html"),
};

static ASSETS: &[Asset] = &[
    INDEX,
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../ui/app.css"),
    },
];

/// The page's Content-Security-Policy: scripts, styles and requests only from this origin;
/// images also from `blob:`/`data:` (the PNG export draws the SVG through an image).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' blob: data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether `segs` (a request path split at `/`) is under `/ui`.
pub fn is_ui(segs: &[&str]) -> bool {
    segs.first() == Some(&"ui")
}

/// Serves `/ui`, `/ui/` and the files under it. `path` is the request's path, `segs` its
/// non-empty segments (starting with `ui`).
pub fn serve(method: &Method, path: &str, segs: &[&str], headers: &http::HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::method_not_allowed().into_response();
    }
    let asset = match segs {
        ["ui"] if !path.ends_with('/') => {
            let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/ui/"));
            return r;
        }
        ["ui"] => Some(&INDEX),
        ["ui", name] if !path.ends_with('/') => ASSETS.iter().find(|a| a.name == *name),
        _ => None,
    };
    let Some(asset) = asset else {
        return ApiError::path_not_found().into_response();
    };
    let mut r = crate::rest::cached_bytes(headers, asset.body.to_vec(), asset.content_type);
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        serve(&Method::GET, path, &segs, &http::HeaderMap::new())
    }

    #[test]
    fn serves_the_embedded_files_and_nothing_else() {
        let r = get("/ui/");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .is_ok_and(|v| v.contains("script-src 'self'"))
        );
        assert_eq!(get("/ui/app.js").status(), StatusCode::OK);
        assert_eq!(get("/ui/app.css").status(), StatusCode::OK);
        assert_eq!(get("/ui/index.html").status(), StatusCode::OK);
        let r = get("/ui");
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.headers()[header::LOCATION], "/ui/");
        for bad in [
            "/ui/nope.js",
            "/ui/../ui/app.js",
            "/ui/%2e%2e/kubeconfig",
            "/ui/app.js/",
            "/ui/x/app.js",
            "/ui/app.js/x",
        ] {
            assert_eq!(get(bad).status(), StatusCode::NOT_FOUND, "{bad}");
        }
    }

    #[test]
    fn only_get_and_head() {
        let segs = ["ui"];
        let r = serve(&Method::POST, "/ui/", &segs, &http::HeaderMap::new());
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = serve(&Method::HEAD, "/ui/", &segs, &http::HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn revalidates_with_the_etag() {
        let r = get("/ui/app.js");
        let etag = r.headers()[header::ETAG].clone();
        let mut h = http::HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        let r = serve(&Method::GET, "/ui/app.js", &["ui", "app.js"], &h);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for a in ASSETS {
            // the SVG namespace is a name, not a place the page goes to
            let text = std::str::from_utf8(a.body)
                .expect("utf-8")
                .replace("http://www.w3.org/2000/svg", "");
            for bad in [
                "http://",
                "https://",
                "//cdn",
                "<script>",
                " onclick=",
                "style=\"",
            ] {
                assert!(!text.contains(bad), "{} contains {bad:?}", a.name);
            }
        }
    }
}
