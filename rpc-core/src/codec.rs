//! Reading length-prefixed frames from a byte stream, with a hard limit
//! checked before any frame body is allocated.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::budget::{BufferBudget, Share};
use crate::wire::LEN_PREFIX;

/// Why no frame could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The announced length is over the limit; nothing was allocated for it.
    TooLarge {
        /// The announced length.
        size: u64,
        /// The limit it exceeded.
        limit: u64,
    },
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes of the unfinished frame that had arrived.
        pending: usize,
    },
    /// The stream failed.
    Io(std::io::Error),
    /// A partial frame needed more buffer than the shared budget had left.
    OverBudget {
        /// The budget's limit, in bytes.
        limit: u64,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge { size, limit } => write!(
                f,
                "a frame of {size} bytes was announced, over the limit of {limit} bytes"
            ),
            ReadError::Truncated { pending } => {
                write!(
                    f,
                    "the stream ended inside a frame ({pending} bytes pending)"
                )
            }
            ReadError::Io(e) => write!(f, "reading failed: {e}"),
            ReadError::OverBudget { limit } => write!(
                f,
                "a partial frame needed more than the shared budget of {limit} bytes had left"
            ),
        }
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

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
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max_frame: u32,
    chunk: usize,
    /// Reads in a row that used under a quarter of the chunk.
    small_reads: u8,
    /// What the buffer takes from a shared budget beyond its allowance.
    share: Share,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader that refuses frames longer than `max_frame` bytes.
    ///
    /// Nothing is read until a frame is asked for.
    pub fn new(io: R, max_frame: u32) -> Self {
        FrameReader {
            io,
            buf: BytesMut::new(),
            max_frame,
            chunk: MIN_READ_CHUNK,
            small_reads: 0,
            share: Share::default(),
        }
    }

    /// Makes the buffer take from `budget` whatever it holds for a partial
    /// frame beyond [`BufferBudget::FREE_PER_CONNECTION`].
    pub fn set_budget(&mut self, budget: Option<BufferBudget>) {
        self.share = Share::new(budget);
    }

    /// Whether part of a frame is buffered, waiting for the rest.
    pub fn partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Changes the frame limit (after the handshake raises it).
    ///
    /// A frame refused by the old limit stays in the buffer, so it can be
    /// read once the limit allows it.
    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.max_frame = max_frame;
    }

    /// The next complete frame already in the buffer, without reading.
    ///
    /// # Errors
    ///
    /// [`ReadError::TooLarge`] when the announced length exceeds the limit.
    pub fn buffered_frame(&mut self) -> Result<Option<Bytes>, ReadError> {
        if self.buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let mut len_bytes = [0u8; LEN_PREFIX];
        len_bytes.copy_from_slice(&self.buf[..LEN_PREFIX]);
        let len = u32::from_le_bytes(len_bytes);
        if len > self.max_frame {
            return Err(ReadError::TooLarge {
                size: u64::from(len),
                limit: u64::from(self.max_frame),
            });
        }
        let total = LEN_PREFIX + len as usize;
        if self.buf.len() < total {
            // Room for more of this frame, grown with what has arrived (at
            // most doubling it, or by one read chunk, which grows only while
            // reads fill it) rather than reserved as announced: a peer that
            // announces a large frame and sends little of it holds little
            // memory.
            let have = self.buf.len();
            self.buf.reserve((total - have).min(have.max(self.chunk)));
            if !self.share.hold(self.buf.capacity()) {
                return Err(ReadError::OverBudget {
                    limit: self.share.limit(),
                });
            }
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        frame.advance(LEN_PREFIX);
        // The frame now belongs to whoever handles it; the buffer holds
        // only what is left.
        self.share.hold(self.buf.capacity());
        Ok(Some(frame.freeze()))
    }

    /// Reads more bytes into the buffer.
    ///
    /// Returns `true` when bytes were read, and `false` at a clean end of
    /// stream (no partial frame pending).
    ///
    /// # Errors
    ///
    /// [`ReadError::Truncated`] when the stream ends in the middle of a
    /// frame; [`ReadError::Io`] on a read error.
    pub async fn fill(&mut self) -> Result<bool, ReadError> {
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
            return Err(ReadError::Truncated {
                pending: self.buf.len(),
            });
        }
        Ok(true)
    }

    /// Reads until a whole frame is available; `None` at a clean end of stream.
    ///
    /// # Errors
    ///
    /// As [`buffered_frame`](Self::buffered_frame) and [`fill`](Self::fill).
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, ReadError> {
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
    /// [`ReadError::Io`] when the stream ends (`UnexpectedEof`) or fails
    /// before `out` is full.
    pub async fn read_raw(&mut self, out: &mut [u8]) -> Result<(), ReadError> {
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
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }
}
