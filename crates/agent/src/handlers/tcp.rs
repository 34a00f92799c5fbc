//! The tcpSocket handler: the connection opens within the timeout = Success (it is closed at
//! once); otherwise a Failure with Go's dial error text.

use std::time::Duration;

use super::action::{HandlerResult, Outcome, dial_error, join_host_port};

/// Runs a TCP probe: the connection opens within `timeout` = Success (closed at once).
pub async fn run_tcp(host: &str, port: u16, timeout: Duration) -> HandlerResult {
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => {
            drop(stream);
            HandlerResult::new(Outcome::Success, "")
        }
        Ok(Err(e)) => HandlerResult::new(
            Outcome::Failure {
                timed_out: e.kind() == std::io::ErrorKind::TimedOut,
            },
            dial_error(&addr, Some(&e)),
        ),
        Err(_) => HandlerResult::new(
            Outcome::Failure { timed_out: true },
            dial_error(&addr, None),
        ),
    }
}
