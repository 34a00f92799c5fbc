//! Streaming exec, client side: the runtime makes the pipes, sends their container ends to
//! the supervisor with the `exec_stream` request (SCM_RIGHTS over the control socket), and
//! keeps its own ends as async streams. The supervisor starts the command exactly like a
//! probe's exec (same namespaces, cgroup, env, user) and reports its exit on the same
//! connection; closing the connection (dropping [`ExecSession::exit`]) kills the command.
//!
//! With `tty`, the command's stdin, stdout and stderr are the secondary side of a new pseudo
//! terminal (not its controlling terminal: the command is not a session leader), and the
//! runtime keeps the primary side: reading it is the command's output, writing it is its
//! input, and [`ExecSession::resize`] sets its window size.

use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;

use super::proto::{Request, Response};
use super::{ProcessRuntime, from_wire, os};
use crate::{ContainerId, ExecSession, ExecStreamRequest, RuntimeError};

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| os("pipe", e))
}

/// Sends (part of) `bytes` with `fds` attached to the first byte sent; returns how many
/// bytes went (a non-blocking socket may take fewer).
pub(crate) fn send_fds(
    socket: impl AsFd,
    bytes: &[u8],
    fds: &[&OwnedFd],
) -> std::io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(std::io::Error::other("too many descriptors"));
    }
    rustix::net::sendmsg(
        socket,
        &[std::io::IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(std::io::Error::from)
}

/// Reads from a unix socket, keeping the descriptors that came with the bytes
/// (SCM_RIGHTS, close-on-exec).
pub(crate) fn recv_with_fds(
    socket: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> std::io::Result<usize> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        socket,
        &mut [std::io::IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    Ok(got.bytes)
}

/// Sends `line` with `fds` attached to its first byte.
async fn send_with_fds(stream: &UnixStream, line: &[u8], fds: &[&OwnedFd]) -> std::io::Result<()> {
    let mut sent = 0;
    while sent < line.len() {
        stream.writable().await?;
        let attach: &[&OwnedFd] = if sent == 0 { fds } else { &[] };
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            send_fds(stream, &line[sent..], attach)
        }) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads one answer line and the descriptors that came with it.
async fn recv_line_with_fds(stream: &UnixStream) -> Result<(Vec<u8>, Vec<OwnedFd>), String> {
    let mut line = Vec::new();
    let mut fds = Vec::new();
    let mut chunk = [0u8; 4096];
    while !line.contains(&b'\n') {
        if line.len() > 1 << 16 {
            return Err("answer too long".into());
        }
        stream
            .readable()
            .await
            .map_err(|e| format!("receive: {e}"))?;
        match stream.try_io(tokio::io::Interest::READABLE, || {
            recv_with_fds(stream, &mut chunk, &mut fds)
        }) {
            Ok(0) => return Err("connection closed without an answer".into()),
            Ok(n) => line.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    Ok((line, fds))
}

/// Opens a pseudo terminal: (primary, secondary).
pub(crate) fn open_pty() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let primary = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .map_err(|e| os("open a pseudo terminal", e))?;
    grantpt(&primary).map_err(|e| os("grantpt", e))?;
    unlockpt(&primary).map_err(|e| os("unlockpt", e))?;
    let name = ptsname(&primary, Vec::new()).map_err(|e| os("ptsname", e))?;
    let secondary = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| os("open the terminal", e))?;
    rustix::io::ioctl_fionbio(&primary, true).map_err(|e| os("set non-blocking", e))?;
    Ok((primary, secondary))
}

/// One descriptor of a terminal's primary side as an async stream. End of file: the
/// secondary side is closed everywhere (the kernel answers EIO).
struct Pty(AsyncFd<OwnedFd>);

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = match self.0.poll_read_ready(cx) {
                Poll::Ready(g) => g?,
                Poll::Pending => return Poll::Pending,
            };
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                rustix::io::read(fd.get_ref(), &mut *unfilled).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = match self.0.poll_write_ready(cx) {
                Poll::Ready(g) => g?,
                Poll::Pending => return Poll::Pending,
            };
            match guard
                .try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(std::io::Error::from))
            {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Registers a terminal descriptor with the reactor.
#[allow(unsafe_code)]
fn register(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, RuntimeError> {
    // SAFETY: `OwnedFd` owns a valid open descriptor, closes it only on drop, and returns
    // the same raw descriptor for its whole life, which is what `register` requires.
    unsafe { AsyncFd::register(fd) }.map_err(|e| os("register the terminal", e.into_parts().1))
}

/// The streams of a terminal exec: (child stdin, stdout, stderr fds; our session parts).
type TtyParts = (
    [OwnedFd; 3],
    crate::ExecReader,
    Option<crate::ExecWriter>,
    crate::ExecResize,
);

fn tty_parts(stdin: bool) -> Result<TtyParts, RuntimeError> {
    let (primary, secondary) = open_pty()?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| os("dup", e));
    let child = [dup(&secondary)?, dup(&secondary)?, secondary];
    let sizer = dup(&primary)?;
    let writer = if stdin {
        let w = register(dup(&primary)?)?;
        Some(Box::pin(Pty(w)) as crate::ExecWriter)
    } else {
        None
    };
    let reader = register(primary)?;
    Ok((child, Box::pin(Pty(reader)), writer, resizer(sizer)))
}

/// Sets the window size of the terminal whose primary side is `primary`.
fn resizer(primary: OwnedFd) -> crate::ExecResize {
    Box::new(move |cols, rows| {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&primary, size).map_err(|e| os("resize the terminal", e))
    })
}

/// The error of a supervisor (of sandbox `sid`) that did not answer as it should.
fn supervisor_unreachable(sid: &str) -> impl Fn(String) -> RuntimeError + Copy + '_ {
    move |message| RuntimeError::SupervisorUnreachable {
        id: sid.to_string(),
        message,
    }
}

impl ProcessRuntime {
    /// A connection of its own to sandbox `sid`'s supervisor (for a stream that outlives
    /// one request).
    async fn connect_supervisor(&self, sid: &str) -> Result<UnixStream, RuntimeError> {
        let timeout = self.inner.config.request_timeout;
        let sock = self.sandbox_dir(sid).join("sock");
        tokio::time::timeout(timeout, UnixStream::connect(&sock))
            .await
            .map_err(|_| supervisor_unreachable(sid)("connect timed out".into()))?
            .map_err(|e| supervisor_unreachable(sid)(format!("connect: {e}")))
    }

    pub(super) async fn exec_stream_impl(
        &self,
        id: &ContainerId,
        request: ExecStreamRequest,
    ) -> Result<ExecSession, RuntimeError> {
        let sid = self.sandbox_of(id)?;
        let unreachable = supervisor_unreachable(&sid);
        let (child_fds, stdout, stderr, stdin, resize) = if request.tty {
            let (child, reader, writer, resize) = tty_parts(request.stdin)?;
            if let Some((cols, rows)) = request.size {
                resize(cols, rows)?;
            }
            let empty: crate::ExecReader = Box::pin(tokio::io::empty());
            (child, reader, empty, writer, Some(resize))
        } else {
            let (out_r, out_w) = pipe_pair()?;
            let (err_r, err_w) = pipe_pair()?;
            let (in_child, in_ours): (OwnedFd, Option<OwnedFd>) = if request.stdin {
                let (r, w) = pipe_pair()?;
                (r, Some(w))
            } else {
                let f = std::fs::File::open("/dev/null").map_err(|e| os("open /dev/null", e))?;
                (OwnedFd::from(f), None)
            };
            let stdout = pipe::Receiver::from_owned_fd(out_r).map_err(|e| os("stdout pipe", e))?;
            let stderr = pipe::Receiver::from_owned_fd(err_r).map_err(|e| os("stderr pipe", e))?;
            let stdin = match in_ours {
                Some(fd) => Some(Box::pin(
                    pipe::Sender::from_owned_fd(fd).map_err(|e| os("stdin pipe", e))?,
                ) as crate::ExecWriter),
                None => None,
            };
            (
                [in_child, out_w, err_w],
                Box::pin(stdout) as crate::ExecReader,
                Box::pin(stderr) as crate::ExecReader,
                stdin,
                None,
            )
        };
        let timeout = self.inner.config.request_timeout;
        let stream = self.connect_supervisor(&sid).await?;
        let req = Request::ExecStream {
            id: id.0.clone(),
            command: request.command.clone(),
            tty: request.tty,
        };
        let mut line = serde_json::to_vec(&req).map_err(|e| os("encode request", e))?;
        line.push(b'\n');
        let [in_child, out_w, err_w] = child_fds;
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
        let exit_sid = sid.clone();
        let exit = async move {
            let unreachable = supervisor_unreachable(&exit_sid);
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
            stdin,
            stdout,
            stderr,
            exit: Box::pin(exit),
            resize,
        })
    }
}

impl ProcessRuntime {
    /// [`crate::ContainerRuntime::attach`]: asks the supervisor for the container's stdin
    /// (its descriptor comes with the answer) and wraps it as a stream.
    pub(super) async fn attach_impl(
        &self,
        id: &ContainerId,
    ) -> Result<crate::AttachSession, RuntimeError> {
        let sid = self.sandbox_of(id)?;
        let unreachable = supervisor_unreachable(&sid);
        let tty = crate::ContainerRuntime::container_status(self, id)
            .await?
            .config
            .stdio
            .tty;
        let timeout = self.inner.config.request_timeout;
        let stream = self.connect_supervisor(&sid).await?;
        let mut line = serde_json::to_vec(&Request::Attach { id: id.0.clone() })
            .map_err(|e| os("encode request", e))?;
        line.push(b'\n');
        tokio::time::timeout(timeout, send_with_fds(&stream, &line, &[]))
            .await
            .map_err(|_| unreachable("send timed out".into()))?
            .map_err(|e| unreachable(format!("send: {e}")))?;
        let (answer, mut fds) = tokio::time::timeout(timeout, recv_line_with_fds(&stream))
            .await
            .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
            .map_err(unreachable)?;
        let resp: Response =
            serde_json::from_slice(&answer).map_err(|e| unreachable(format!("bad answer: {e}")))?;
        if let Some(e) = resp.error {
            return Err(from_wire(e, &sid));
        }
        let Some(fd) = fds.pop() else {
            return Ok(crate::AttachSession {
                stdin: None,
                resize: None,
            });
        };
        if tty {
            let sizer = fd.try_clone().map_err(|e| os("dup", e))?;
            Ok(crate::AttachSession {
                stdin: Some(Box::pin(Pty(register(fd)?))),
                resize: Some(resizer(sizer)),
            })
        } else {
            let w = pipe::Sender::from_owned_fd(fd).map_err(|e| os("stdin pipe", e))?;
            Ok(crate::AttachSession {
                stdin: Some(Box::pin(w)),
                resize: None,
            })
        }
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
