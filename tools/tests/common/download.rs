//! Downloads checked against the file that was served: curl's arguments and the comparison.

use std::path::Path;

use super::{Finished, Process, sha256_file};

/// Returns curl arguments that fetch `url` into `output` and fail on any HTTP error, after
/// `extra` (such as `-6`).
pub fn curl_args(extra: &[&str], url: &str, output: &Path) -> Vec<String> {
    let fixed = [
        "-sS",
        "--fail",
        "--connect-timeout",
        "5",
        "--max-time",
        "60",
    ];
    let mut args: Vec<String> = extra.iter().chain(&fixed).map(|a| a.to_string()).collect();
    args.push("-o".to_owned());
    args.push(output.display().to_string());
    args.push(url.to_owned());
    args
}

/// Asserts that the download succeeded and `received` is a whole copy of `served`, which is
/// `len` bytes long.
pub fn assert_same_file(
    served: &Path,
    received: &Path,
    len: u64,
    download: &Finished,
    server: &Process,
) {
    if !download.succeeded() {
        let (stdout, stderr) = server.output_so_far();
        panic!(
            "{} failed\n{download}\n{} stdout:\n{stdout}\n{} stderr:\n{stderr}",
            download.label,
            server.label(),
            server.label()
        );
    }
    let received_len = std::fs::metadata(received)
        .unwrap_or_else(|err| panic!("{} is missing: {err}\n{download}", received.display()))
        .len();
    assert_eq!(
        received_len, len,
        "downloaded length differs from the served file"
    );
    assert_eq!(
        sha256_file(received),
        sha256_file(served),
        "downloaded content differs"
    );
}
