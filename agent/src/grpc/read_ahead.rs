//! A stream whose first bytes were read before HTTP/2 takes it: the client reads the
//! server's first flight to learn whether its certificate was accepted.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Most bytes read ahead.
const AHEAD: usize = 1024;

/// `stream` with the bytes read ahead served first.
pub struct ReadAhead<S> {
    head: Vec<u8>,
    at: usize,
    stream: S,
}

impl<S: AsyncRead + Unpin> ReadAhead<S> {
    /// Reads the other end's first bytes (an error or end of stream is returned as such).
    pub async fn first(mut stream: S) -> io::Result<ReadAhead<S>> {
        let mut head = vec![0; AHEAD];
        let n = stream.read(&mut head).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before it spoke",
            ));
        }
        head.truncate(n);
        Ok(ReadAhead {
            head,
            at: 0,
            stream,
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

super::write_through!(ReadAhead<S>, stream);
