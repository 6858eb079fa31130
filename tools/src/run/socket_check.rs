//! Checks that a `netcon-dp` accepts connections on the control socket.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::RunError;

/// Returns an error unless `socket` is a Unix socket that accepts a connection.
///
/// The probe connection is closed at once without a request.
pub fn check_dataplane(socket: &Path) -> Result<(), RunError> {
    let not_running = |reason: &str| RunError::DataplaneNotRunning {
        socket: socket.to_path_buf(),
        reason: reason.to_owned(),
    };
    let meta = match std::fs::metadata(socket) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(not_running("the socket does not exist"));
        }
        Err(err) => return Err(not_running(&err.to_string())),
    };
    if !meta.file_type().is_socket() {
        return Err(not_running("the path is not a Unix socket"));
    }
    match UnixStream::connect(socket) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => Err(not_running(
            "connection refused: the socket file is left over from an earlier netcon-dp",
        )),
        Err(err) => Err(not_running(&format!("cannot connect: {err}"))),
    }
}
