//! Where the examples take their shared secret from: a file named on the
//! command line (`--secret-file`), or the `RPC_SECRET` environment variable.
//! Never the command line itself, where every user on the host can read it
//! (`ps`, `/proc/<pid>/cmdline`).

use std::path::Path;

/// The environment variable the examples read the secret from.
pub const ENV: &str = "RPC_SECRET";

/// The shared secret: the contents of `file` (without a trailing newline),
/// else `$RPC_SECRET`, else none.
///
/// # Errors
///
/// A message naming the file when it cannot be read or is empty.
pub fn load(file: Option<&Path>) -> Result<Option<Vec<u8>>, String> {
    let secret = match file {
        Some(path) => {
            let mut bytes = std::fs::read(path)
                .map_err(|e| format!("reading the secret file {}: {e}", path.display()))?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            if bytes.is_empty() {
                return Err(format!("the secret file {} is empty", path.display()));
            }
            Some(bytes)
        }
        None => std::env::var_os(ENV)
            .filter(|v| !v.is_empty())
            .map(|v| v.into_encoded_bytes()),
    };
    Ok(secret)
}
