//! Reading length-prefixed frames from a byte stream, with a hard limit
//! checked before any frame body is allocated.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::RpcError;
use crate::wire::LEN_PREFIX;

/// The smallest and largest amount the read buffer grows by when it is
/// full. An idle connection waits with the smallest (memory per idle
/// connection is a measured target); a busy one doubles its chunk each time
/// a read fills it, so bulk traffic is read in few syscalls.
const MIN_READ_CHUNK: usize = 1024;
const MAX_READ_CHUNK: usize = 64 * 1024;
/// A read buffer larger than this is released once it is empty again, so an
/// idle connection does not keep the memory of its largest message.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Splits a byte stream into frames.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use rpc_core::codec::FrameReader;
///
/// let bytes: &[u8] = &[3, 0, 0, 0, b'a', b'b', b'c', 200, 0, 0, 0];
/// let mut r = FrameReader::new(bytes, 16);
/// assert_eq!(&r.next_frame().await.unwrap().unwrap()[..], b"abc");
/// // The next length (200) exceeds the limit (16): refused before reading it.
/// assert!(r.next_frame().await.is_err());
/// # }
/// ```
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max_frame: u32,
    chunk: usize,
    /// Reads in a row that used under a quarter of the chunk.
    small_reads: u8,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader that refuses frames longer than `max_frame` bytes.
    ///
    /// Nothing is read until a frame is asked for.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// use rpc_core::codec::FrameReader;
    ///
    /// let bytes: &[u8] = &[2, 0, 0, 0, b'h', b'i'];
    /// let mut r = FrameReader::new(bytes, 1024);
    /// assert_eq!(&r.next_frame().await?.unwrap()[..], b"hi");
    /// assert!(r.next_frame().await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(io: R, max_frame: u32) -> Self {
        FrameReader {
            io,
            buf: BytesMut::new(),
            max_frame,
            chunk: MIN_READ_CHUNK,
            small_reads: 0,
        }
    }

    /// Changes the frame limit (after the handshake raises it).
    ///
    /// A frame refused by the old limit stays in the buffer, so it can be
    /// read once the limit allows it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// use rpc_core::{codec::FrameReader, RpcError};
    ///
    /// let bytes: &[u8] = &[8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    /// let mut r = FrameReader::new(bytes, 4);
    /// let err = r.next_frame().await.unwrap_err();
    /// assert_eq!(err, RpcError::TooLarge { size: 8, limit: 4 });
    /// r.set_max_frame(8);
    /// assert_eq!(r.next_frame().await?.unwrap().len(), 8);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.max_frame = max_frame;
    }

    /// The next complete frame already in the buffer, without reading.
    ///
    /// # Errors
    ///
    /// [`RpcError::TooLarge`] when the announced length exceeds the limit.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// use rpc_core::codec::FrameReader;
    ///
    /// // One whole frame (`[9]`), then the first half of a length prefix.
    /// let bytes: &[u8] = &[1, 0, 0, 0, 9, 1, 0];
    /// let mut r = FrameReader::new(bytes, 16);
    /// assert_eq!(r.buffered_frame()?, None); // nothing has been read yet
    /// assert!(r.fill().await?);
    /// assert_eq!(r.buffered_frame()?.as_deref(), Some(&[9u8][..]));
    /// assert_eq!(r.buffered_frame()?, None); // the rest is incomplete
    /// # Ok(())
    /// # }
    /// ```
    pub fn buffered_frame(&mut self) -> Result<Option<Bytes>, RpcError> {
        if self.buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let mut len_bytes = [0u8; LEN_PREFIX];
        len_bytes.copy_from_slice(&self.buf[..LEN_PREFIX]);
        let len = u32::from_le_bytes(len_bytes);
        if len > self.max_frame {
            return Err(RpcError::TooLarge {
                size: u64::from(len),
                limit: u64::from(self.max_frame),
            });
        }
        let total = LEN_PREFIX + len as usize;
        if self.buf.len() < total {
            // Room for the rest of this frame; bounded by the limit above.
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        frame.advance(LEN_PREFIX);
        Ok(Some(frame.freeze()))
    }

    /// Reads more bytes into the buffer.
    ///
    /// Returns `true` when bytes were read, and `false` at a clean end of
    /// stream (no partial frame pending).
    ///
    /// # Errors
    ///
    /// [`RpcError::Protocol`] when the stream ends in the middle of a frame;
    /// on a read error, [`RpcError::ConnectionClosed`] when the stream was
    /// reset or broken by the other end and [`RpcError::Io`] otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// use rpc_core::{codec::FrameReader, RpcError};
    ///
    /// let mut r = FrameReader::new(&[1, 0, 0, 0, 7][..], 16);
    /// assert!(r.fill().await?);
    /// assert_eq!(r.buffered_frame()?.as_deref(), Some(&[7u8][..]));
    /// assert!(!r.fill().await?); // clean end of stream
    ///
    /// let mut cut = FrameReader::new(&[5, 0, 0][..], 16);
    /// assert!(cut.fill().await?);
    /// assert!(matches!(cut.fill().await, Err(RpcError::Protocol(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn fill(&mut self) -> Result<bool, RpcError> {
        if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
            self.buf = BytesMut::new();
        }
        // Never read into a sliver of room: a read that fills its buffer
        // leaves the socket marked readable, which costs one more `read`
        // (that finds nothing) before waiting; a short read does not.
        if self.buf.capacity() - self.buf.len() < self.chunk / 2 {
            self.buf.reserve(self.chunk);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = self.io.read_buf(&mut self.buf).await?;
        if n == room {
            self.chunk = (self.chunk * 2).min(MAX_READ_CHUNK);
            self.small_reads = 0;
        } else if n < self.chunk / 4 {
            // Shrink only after a run of small reads, so that a burst that
            // alternates full and partial reads does not flap the size.
            self.small_reads += 1;
            if self.small_reads >= 8 {
                self.chunk = (self.chunk / 2).max(MIN_READ_CHUNK);
                self.small_reads = 0;
            }
        } else {
            self.small_reads = 0;
        }
        if n == 0 {
            if self.buf.is_empty() {
                return Ok(false);
            }
            return Err(RpcError::Protocol(format!(
                "stream ended inside a frame ({} bytes pending)",
                self.buf.len()
            )));
        }
        Ok(true)
    }

    /// Reads until a whole frame is available; `None` at a clean end of stream.
    ///
    /// # Errors
    ///
    /// As [`buffered_frame`](Self::buffered_frame) and [`fill`](Self::fill).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// use rpc_core::codec::FrameReader;
    /// use rpc_core::wire::{decode_header, encode_frame, Header};
    ///
    /// let mut bytes = Vec::new();
    /// encode_frame(&mut bytes, &Header::Ping { id: 1 }, &())?;
    /// encode_frame(&mut bytes, &Header::Goodbye, &())?;
    /// let mut r = FrameReader::new(&bytes[..], 1024);
    /// let frame = r.next_frame().await?.unwrap();
    /// assert_eq!(decode_header(&frame)?.0, Header::Ping { id: 1 });
    /// let frame = r.next_frame().await?.unwrap();
    /// assert_eq!(decode_header(&frame)?.0, Header::Goodbye);
    /// assert!(r.next_frame().await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, RpcError> {
        loop {
            if let Some(f) = self.buffered_frame()? {
                return Ok(Some(f));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads exactly `out.len()` raw bytes (the preamble).
    ///
    /// Bytes already buffered are used first, and bytes after `out.len()`
    /// stay buffered for the next frame.
    ///
    /// # Errors
    ///
    /// [`RpcError::ConnectionClosed`] when the stream ends (or is reset)
    /// before `out` is full, [`RpcError::Io`] on another read error.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// use rpc_core::{codec::FrameReader, wire::MAGIC, RpcError};
    ///
    /// let bytes: &[u8] = b"RPC\x7f\x00\x01\x02\x00\x00\x00hi";
    /// let mut r = FrameReader::new(bytes, 1024);
    /// let mut preamble = [0u8; 6];
    /// r.read_raw(&mut preamble).await?;
    /// assert_eq!(preamble[..4], MAGIC);
    /// assert_eq!(&r.next_frame().await?.unwrap()[..], b"hi");
    /// let err = r.read_raw(&mut [0u8; 1]).await.unwrap_err();
    /// assert!(matches!(err, RpcError::ConnectionClosed(_)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read_raw(&mut self, out: &mut [u8]) -> Result<(), RpcError> {
        let buffered = self.buf.len().min(out.len());
        out[..buffered].copy_from_slice(&self.buf[..buffered]);
        self.buf.advance(buffered);
        if buffered < out.len() {
            self.io.read_exact(&mut out[buffered..]).await?;
        }
        Ok(())
    }

    /// The underlying stream.
    ///
    /// Bytes the reader has already taken from it wait in the reader's
    /// buffer, not in the stream.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// use rpc_core::codec::FrameReader;
    ///
    /// let mut r = FrameReader::new(&[1, 0, 0, 0, b'x'][..], 16);
    /// assert_eq!(r.get_mut().len(), 5); // nothing read yet
    /// assert!(r.next_frame().await?.is_some());
    /// assert!(r.get_mut().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }
}
