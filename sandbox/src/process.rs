//! What the local servers of the tests share: a janitor that cleans up after them whatever
//! happens to the test process, and small helpers to find programs, ports and a live server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// A shell that waits for its standard input to close (its owner was dropped, or the test
/// process exited, for whatever reason, a failed test included) and then runs `cleanup`.
pub struct Janitor(Child);

impl Janitor {
    pub fn spawn(cleanup: &str, what: &str) -> Result<Janitor> {
        Command::new("sh")
            // Signals to the whole process group (Ctrl-C, a timeout) must not stop the janitor
            // before it has cleaned up; it ignores them and cleans up when its input closes.
            .args([
                "-c",
                &format!("trap '' INT TERM HUP; cat >/dev/null; {cleanup}"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Janitor)
            .with_context(|| format!("starting the janitor of {what}"))
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        drop(self.0.stdin.take()); // end of input: the janitor cleans up
        let _ = self.0.wait();
    }
}

/// A path as one word of a shell command.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.exists())
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether something at `address` answers an HTTP request for `path`.
pub fn answers_http(address: &str, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut response = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut response).is_ok()
        && response.starts_with(b"HTTP/1.")
}
