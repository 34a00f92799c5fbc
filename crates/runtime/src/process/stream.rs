//! Streaming exec, client side: the runtime makes the pipes, sends their container ends to
//! the supervisor with the `exec_stream` request (SCM_RIGHTS over the control socket), and
//! keeps its own ends as async streams. The supervisor starts the command exactly like a
//! probe's exec (same namespaces, cgroup, env, user) and reports its exit on the same
//! connection; closing the connection (dropping [`ExecSession::exit`]) kills the command.

use std::os::fd::{AsFd, OwnedFd};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;

use super::proto::{Request, Response};
use super::{ProcessRuntime, from_wire, os};
use crate::{ContainerId, ExecSession, ExecStreamRequest, RuntimeError};

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| os("pipe", e))
}

/// Sends `line` with `fds` attached to its first byte.
async fn send_with_fds(stream: &UnixStream, line: &[u8], fds: &[&OwnedFd]) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut sent = 0;
    while sent < line.len() {
        stream.writable().await?;
        let attach = sent == 0;
        let r = stream.try_io(tokio::io::Interest::WRITABLE, || {
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if attach && !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
                return Err(std::io::Error::other("too many descriptors"));
            }
            rustix::net::sendmsg(
                stream,
                &[std::io::IoSlice::new(&line[sent..])],
                &mut control,
                SendFlags::NOSIGNAL,
            )
            .map_err(std::io::Error::from)
        });
        match r {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl ProcessRuntime {
    pub(super) async fn exec_stream_impl(
        &self,
        id: &ContainerId,
        request: ExecStreamRequest,
    ) -> Result<ExecSession, RuntimeError> {
        let sid = self
            .find(id)
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.clone() })?;
        let unreachable = |message: String| RuntimeError::SupervisorUnreachable {
            id: sid.clone(),
            message,
        };
        let (out_r, out_w) = pipe_pair()?;
        let (err_r, err_w) = pipe_pair()?;
        let (in_child, in_ours): (OwnedFd, Option<OwnedFd>) = if request.stdin {
            let (r, w) = pipe_pair()?;
            (r, Some(w))
        } else {
            let f = std::fs::File::open("/dev/null").map_err(|e| os("open /dev/null", e))?;
            (OwnedFd::from(f), None)
        };
        let timeout = self.inner.config.request_timeout;
        let sock = self.sandbox_dir(&sid).join("sock");
        let stream = tokio::time::timeout(timeout, UnixStream::connect(&sock))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|e| unreachable(format!("connect: {e}")))?;
        let req = Request::ExecStream {
            id: id.0.clone(),
            command: request.command.clone(),
        };
        let mut line = serde_json::to_vec(&req).map_err(|e| os("encode request", e))?;
        line.push(b'\n');
        tokio::time::timeout(
            timeout,
            send_with_fds(&stream, &line, &[&in_child, &out_w, &err_w]),
        )
        .await
        .map_err(|_| unreachable("send timed out".into()))?
        .map_err(|e| unreachable(format!("send: {e}")))?;
        // The supervisor holds its copies now; ours must close so that end of file reaches
        // the reader once the command closes its ends.
        drop((in_child, out_w, err_w));
        let mut reader = BufReader::new(stream);
        let first = tokio::time::timeout(timeout, read_response(&mut reader))
            .await
            .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
            .map_err(unreachable)?;
        if let Some(e) = first.error {
            return Err(from_wire(e, &sid));
        }
        let stdout = pipe::Receiver::from_owned_fd(out_r).map_err(|e| os("stdout pipe", e))?;
        let stderr = pipe::Receiver::from_owned_fd(err_r).map_err(|e| os("stderr pipe", e))?;
        let stdin = match in_ours {
            Some(fd) => Some(pipe::Sender::from_owned_fd(fd).map_err(|e| os("stdin pipe", e))?),
            None => None,
        };
        let exit_sid = sid.clone();
        let exit = async move {
            let unreachable = |message: String| RuntimeError::SupervisorUnreachable {
                id: exit_sid.clone(),
                message,
            };
            let resp = read_response(&mut reader).await.map_err(unreachable)?;
            // Keep the connection open until here: closing it kills the command.
            let _ = reader.get_mut().shutdown().await;
            if let Some(e) = resp.error {
                return Err(from_wire(e, &exit_sid));
            }
            match resp.exec {
                Some(r) => r
                    .exit_code
                    .ok_or_else(|| os("exec with streams", "the command was killed")),
                None => Err(os("exec with streams", "the supervisor returned no result")),
            }
        };
        Ok(ExecSession {
            stdin: stdin.map(|s| Box::pin(s) as crate::ExecWriter),
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
            exit: Box::pin(exit),
        })
    }
}

async fn read_response(reader: &mut BufReader<UnixStream>) -> Result<Response, String> {
    let mut buf = String::new();
    let n = reader
        .read_line(&mut buf)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    if n == 0 {
        return Err("connection closed without an answer".into());
    }
    serde_json::from_str::<Response>(&buf).map_err(|e| format!("bad answer: {e}"))
}
