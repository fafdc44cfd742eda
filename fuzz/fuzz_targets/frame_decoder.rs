//! Bytes → `FrameReader` (fed in chunks) → `decode_header` on every frame.
//!
//! Input layout: two bytes of frame limit (u16, little-endian), one byte of
//! read-chunk size (plus one), then the stream. The frames read and the way
//! the stream ends are compared with a straightforward reference parser; each
//! header that decodes must survive `encode_frame` and decode to itself.

#![no_main]

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use rpc_core::__wire::{FrameReader, ReadError};
use rpc_core::__wire::{decode_header, encode_frame, LEN_PREFIX};
use tokio::io::{AsyncRead, ReadBuf};

#[path = "../../rpc-core/tests/support/reference.rs"]
mod reference;
use reference::{frames_of, End};

/// An in-memory stream that hands out at most `chunk` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Runs a future whose only source of `Pending` would be the (always ready)
/// reader above: it must finish without a wake-up.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..16 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("reading from an always-ready stream did not complete");
}

fn check_header(frame: &[u8]) {
    let Ok((header, payload)) = decode_header(frame) else {
        return;
    };
    // The payload is the tail of the frame, not a copy.
    let consumed = frame.len() - payload.len();
    assert_eq!(payload.as_ptr(), frame[consumed..].as_ptr());
    let mut buf = Vec::new();
    encode_frame(&mut buf, &header, &()).expect("a decoded header encodes");
    let body = &buf[LEN_PREFIX..];
    assert_eq!(
        body.len(),
        u32::from_le_bytes(buf[..LEN_PREFIX].try_into().unwrap()) as usize
    );
    // postcard accepts over-long varints; its own encoding is the shortest.
    assert!(
        body.len() <= consumed,
        "{header:?}: {} > {consumed}",
        body.len()
    );
    let (again, rest) = decode_header(body).expect("an encoded header decodes");
    assert_eq!(again, header);
    assert!(rest.is_empty());
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let limit = u32::from(u16::from_le_bytes([data[0], data[1]]));
    let chunk = usize::from(data[2]) + 1;
    let stream = &data[3..];
    let (want_frames, want_end) = frames_of(stream, limit);

    let mut reader = FrameReader::new(
        Chunked {
            data: stream,
            chunk,
        },
        limit,
    );
    let mut got = 0;
    loop {
        match block_on(reader.next_frame()) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= limit as usize);
                assert_eq!(Some(&&frame[..]), want_frames.get(got), "frame {got}");
                check_header(&frame);
                got += 1;
            }
            Ok(None) => {
                assert_eq!(want_end, End::Clean);
                break;
            }
            Err(ReadError::TooLarge { size, limit: l }) => {
                assert_eq!(want_end, End::TooLarge(size));
                assert_eq!(l, u64::from(limit));
                break;
            }
            Err(ReadError::Truncated { .. }) => {
                assert_eq!(want_end, End::Truncated);
                break;
            }
            Err(e) => panic!("unexpected error from an in-memory stream: {e:?}"),
        }
    }
    assert_eq!(got, want_frames.len());
});
