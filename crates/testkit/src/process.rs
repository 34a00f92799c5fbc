//! Helpers for tests that run commands (kubectl, openssl, skopeo, generator checks).

use std::fmt::Display;
use std::process::{Command, Output};

/// Panics naming `what`, the exit status and the command's stderr unless `out` is a
/// success.
pub fn assert_success(out: &Output, what: impl Display) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` to its end and returns its output; panics unless it started and exited 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} could not start: {e}"));
    assert_success(&out, format_args!("{cmd:?}"));
    out
}

/// The python3 stand-in for agnhost `liveness` (spec §9): `python3 -c LIVENESS_PY HEALTHY
/// [PORT]` serves 127.0.0.1:PORT (an ephemeral port when 0 or absent) and prints the port;
/// /healthz answers 200 for HEALTHY seconds then 500, /redirect?loc=X a 302 with Go's
/// `http.Redirect` body, any other path 200.
pub const LIVENESS_PY: &str = r#"
import http.server, sys, time, urllib.parse, html
START = time.time()
HEALTHY = float(sys.argv[1])
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if u.path == "/healthz":
            code = 200 if time.time() - START < HEALTHY else 500
            self.send_response(code); self.end_headers(); self.wfile.write(b"ok" if code == 200 else b"error")
        elif u.path == "/redirect":
            loc = urllib.parse.parse_qs(u.query)["loc"][0]
            body = ('<a href="%s">Found</a>.\n' % html.escape(loc)).encode()
            self.send_response(302); self.send_header("Location", loc)
            self.send_header("Content-Type", "text/html; charset=utf-8"); self.end_headers(); self.wfile.write(body)
        else:
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
s = http.server.HTTPServer(("127.0.0.1", PORT), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
