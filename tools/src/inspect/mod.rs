//! `netcon-ctl show`, `status` and `perf`: ask a running netcon-dp over its control socket
//! (with the same access check as the preload) and print what it returns.

pub mod perf;
pub mod show;
pub mod status;

use std::fmt;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use netcon_control::wire::REPLY_LEN;
use netcon_control::{Op, Reply, Request, fdpass};
use serde_json::Value;

use crate::run::socket_check::{check_dataplane, connect_seqpacket};

/// Why a query failed.
#[derive(Debug)]
pub enum QueryError {
    /// No netcon-dp serves the socket (the message says why and how to start one).
    NotRunning(String),
    /// netcon-dp refused the request or answered something unreadable.
    Failed { socket: PathBuf, message: String },
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::NotRunning(message) => f.write_str(message),
            QueryError::Failed { socket, message } => {
                write!(f, "netcon-dp at {}: {message}", socket.display())
            }
        }
    }
}

impl std::error::Error for QueryError {}

/// Sends `op` to the netcon-dp at `socket` and returns the JSON document it writes back.
pub fn query(socket: &Path, op: Op) -> Result<Value, QueryError> {
    check_dataplane(socket).map_err(|e| QueryError::NotRunning(e.to_string()))?;
    let failed = |message: String| QueryError::Failed {
        socket: socket.to_path_buf(),
        message,
    };
    let control = connect_seqpacket(socket).map_err(|e| failed(format!("cannot connect: {e}")))?;

    fdpass::send(control.as_raw_fd(), &Request::new(op).encode(), None)
        .map_err(|e| failed(format!("cannot send the request: {e}")))?;
    let mut buf = [0u8; REPLY_LEN + 1];
    let (len, pipe) = fdpass::recv(control.as_raw_fd(), &mut buf)
        .map_err(|e| failed(format!("cannot read the reply: {e}")))?;
    if len == 0 {
        return Err(failed(
            "it closed the connection; is this user allowed (netcon-dp --allow-uid)?".into(),
        ));
    }
    let reply = Reply::decode(&buf[..len]).map_err(|e| failed(format!("bad reply: {e}")))?;
    if reply.errno != 0 {
        let error = std::io::Error::from_raw_os_error(reply.errno);
        return Err(failed(format!("request refused: {error}")));
    }
    let pipe = pipe.ok_or_else(|| failed("the reply carries no data pipe".into()))?;
    let mut text = String::new();
    std::fs::File::from(pipe)
        .read_to_string(&mut text)
        .map_err(|e| failed(format!("cannot read the document: {e}")))?;
    serde_json::from_str(&text).map_err(|e| failed(format!("the document is not JSON: {e}")))
}
