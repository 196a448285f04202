//! The persistent connection to the admin socket, in HAProxy's interactive mode (`prompt`):
//! the commands of one exchange are written together and their replies read back in order,
//! on a connection kept open between exchanges.
//!
//! In interactive mode HAProxy ends every reply with the prompt `"\n> "`: the output (empty,
//! or lines each ended by `\n`) and then the prompt. HAProxy's outputs have no empty line
//! followed by `> `, so a reply ends at the first `"\n> "` that opens it or follows a `\n`.
//! [`Session::reply`] gives back what the one-shot exchange would read: the output and one
//! `\n`.
//!
//! A connection belongs to the worker that accepted it, also after a reload: the old worker
//! keeps answering on it, with the maps it had, and stays alive for it. Every exchange
//! therefore ends with `show info`, whose `Stopping: 1` marks an old worker (see
//! [`AdminClient::on_session`](super::AdminClient)).

use std::io;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::proxy::haproxy::oneshot::Exchange;

/// What HAProxy writes after each reply in interactive mode.
const PROMPT: &[u8] = b"\n> ";

/// Bytes asked of the socket per read.
const READ_BYTES: usize = 64 * 1024;

/// One open connection in interactive mode.
#[derive(Debug)]
pub(super) struct Session {
    stream: UnixStream,
    /// Bytes read and not yet consumed start at `head`.
    pending: Vec<u8>,
    head: usize,
}

impl Session {
    /// Connects to `path` and turns interactive mode on, each step bounded by `timeout`.
    pub(super) async fn open(path: &Path, timeout: Duration) -> Result<Session, Exchange> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| Exchange::Timeout)?
            .map_err(Exchange::Connect)?;
        let mut session = Session {
            stream,
            pending: Vec::with_capacity(READ_BYTES),
            head: 0,
        };
        session.write(b"prompt\n", timeout).await?;
        let first = session.reply(timeout, 4096).await?;
        if first != b"\n" {
            let text = String::from_utf8_lossy(&first).trim().to_owned();
            return Err(Exchange::Io(io::Error::other(format!(
                "interactive mode (`prompt`) not accepted: {text:?}"
            ))));
        }
        Ok(session)
    }

    /// Writes `bytes` (whole command lines), bounded by `timeout`.
    pub(super) async fn write(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), Exchange> {
        tokio::time::timeout(timeout, self.stream.write_all(bytes))
            .await
            .map_err(|_| Exchange::Timeout)?
            .map_err(Exchange::Io)
    }

    /// The next whole reply: its output and one `\n`, at most `limit` bytes.
    pub(super) async fn reply(
        &mut self,
        timeout: Duration,
        limit: usize,
    ) -> Result<Vec<u8>, Exchange> {
        let mut out = Vec::new();
        while let Some(line) = self.line(timeout, limit).await? {
            if out.len() + line.len() + 1 > limit {
                return Err(Exchange::TooLarge(limit));
            }
            out.extend_from_slice(self.bytes(line));
            out.push(b'\n');
        }
        out.push(b'\n');
        Ok(out)
    }

    /// The next line of the reply being read, as a range for [`Session::bytes`] (without its
    /// `\n`), or `None` once the reply ended (its prompt is consumed). A line longer than
    /// `max_line` bytes fails.
    pub(super) async fn line(
        &mut self,
        timeout: Duration,
        max_line: usize,
    ) -> Result<Option<Range<usize>>, Exchange> {
        let mut scanned = 0;
        loop {
            let rest = &self.pending[self.head..];
            if rest.starts_with(PROMPT) {
                self.head += PROMPT.len();
                return Ok(None);
            }
            // A prefix of the prompt ("" or "\n" or "\n>") is undecided until more comes.
            if !PROMPT.starts_with(rest) {
                if let Some(pos) = rest[scanned..].iter().position(|&b| b == b'\n') {
                    let start = self.head;
                    let end = start + scanned + pos;
                    self.head = end + 1;
                    return Ok(Some(start..end));
                }
                scanned = rest.len();
                if scanned > max_line {
                    return Err(Exchange::TooLarge(max_line));
                }
            }
            self.fill(timeout).await?;
        }
    }

    /// The bytes of a line [`Session::line`] returned, until the next call.
    pub(super) fn bytes(&self, line: Range<usize>) -> &[u8] {
        &self.pending[line]
    }

    /// Reads more from the socket, after dropping what was consumed. The end of the stream
    /// in the middle of a reply is an error: HAProxy closed the connection (`stats timeout`,
    /// a worker that stopped).
    async fn fill(&mut self, timeout: Duration) -> Result<(), Exchange> {
        if self.head > 0 {
            self.pending.drain(..self.head);
            self.head = 0;
        }
        self.pending.reserve(READ_BYTES);
        let n = tokio::time::timeout(timeout, self.stream.read_buf(&mut self.pending))
            .await
            .map_err(|_| Exchange::Timeout)?
            .map_err(Exchange::Io)?;
        if n == 0 {
            return Err(Exchange::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "HAProxy closed the connection",
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A session whose peer writes `script` (after reading the `prompt` line).
    async fn session_reading(script: &'static [u8]) -> (Session, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.unwrap();
            let mut line = [0u8; 7];
            peer.read_exact(&mut line).await.unwrap();
            assert_eq!(&line, b"prompt\n");
            peer.write_all(b"\n> ").await.unwrap();
            // Byte by byte, so every split of the prompt is met.
            for b in script {
                peer.write_all(&[*b]).await.unwrap();
            }
        });
        let s = Session::open(&path, Duration::from_secs(5)).await.unwrap();
        (s, dir)
    }

    #[tokio::test]
    async fn replies_are_split_at_the_prompt_as_the_one_shot_reads_them() {
        let (mut s, _dir) = session_reading(
            b"\n> entry not found.\n\n> 0x1 web web_green\n0x2 api > b\n\n> 1\n# be_id\n3 be 1\n\n\n> ",
        )
        .await;
        let t = Duration::from_secs(5);
        assert_eq!(s.reply(t, 1024).await.unwrap(), b"\n");
        assert_eq!(s.reply(t, 1024).await.unwrap(), b"entry not found.\n\n");
        assert_eq!(
            s.reply(t, 1024).await.unwrap(),
            b"0x1 web web_green\n0x2 api > b\n\n"
        );
        // `show servers state` ends its output with an empty line of its own.
        assert_eq!(s.reply(t, 1024).await.unwrap(), b"1\n# be_id\n3 be 1\n\n\n");
        let err = s.reply(t, 1024).await.unwrap_err();
        assert!(matches!(err, Exchange::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof));
    }

    #[tokio::test]
    async fn a_reply_over_its_limit_fails() {
        let (mut s, _dir) = session_reading(b"0123456789\n\n> ").await;
        let err = s.reply(Duration::from_secs(5), 8).await.unwrap_err();
        assert!(matches!(err, Exchange::TooLarge(8)));
    }
}
