//! Property tests over random byte streams: the frame decoder, the frame
//! header, the handshake, and an established connection fed garbage.
//!
//! Each property checks the code against a small reference of what it must
//! do with the bytes, not only that it does not panic. The case counts are
//! small so that CI stays fast; `PROPTEST_CASES=N` raises them all (see
//! `fuzz/README.md` for long runs and for the cargo-fuzz targets).

use std::cell::Cell;
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use rpc_core::__wire::{
    decode_header, encode_frame, Handshake, Header, Hello, Verdict, Way, LEN_PREFIX, MAGIC, VERSION,
};
use rpc_core::__wire::{FrameReader, ReadError, Rejection};
use rpc_core::{expose, DisconnectReason, Peer, PeerConfig, Registry};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

#[path = "support/reference.rs"]
mod reference;
use reference::{agrees, expect_handshake, fate_of, frames_of, End, Fate};

// ---------------------------------------------------------------------------
// Harness

/// The configured number of cases, unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

thread_local! {
    static RT: tokio::runtime::Runtime = runtime();
    /// Panics seen on this thread, including inside tasks of a current-thread
    /// runtime (which tokio catches and would otherwise hide).
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

fn panics_so_far() -> usize {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.set(p.get() + 1));
            previous(info);
        }));
    });
    PANICS.with(Cell::get)
}

/// An in-memory stream handing out its bytes in chunks of the given sizes
/// (cycled), optionally returning `Pending` once before every chunk.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    next: usize,
    stall: bool,
    stalled: bool,
}

impl Chunked {
    fn new(data: Vec<u8>, sizes: Vec<usize>, stall: bool) -> Self {
        Chunked {
            data,
            pos: 0,
            sizes,
            next: 0,
            stall,
            stalled: false,
        }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.stall && !self.stalled {
            self.stalled = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.stalled = false;
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        let n = size.min(self.data.len() - self.pos).min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Flips one byte and/or cuts the stream short.
fn mutate(mut bytes: Vec<u8>, flip: Option<(Index, u8)>, cut: Option<Index>) -> Vec<u8> {
    if let Some((i, x)) = flip {
        if !bytes.is_empty() {
            let i = i.index(bytes.len());
            bytes[i] ^= x.max(1);
        }
    }
    if let Some(c) = cut {
        bytes.truncate(c.index(bytes.len() + 1));
    }
    bytes
}

// ---------------------------------------------------------------------------
// Generators

/// Fragments of hostile streams: noise, frames whose length may or may not
/// match their body, exact frames, and huge length prefixes.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..24),
        3 => (0u32..48, vec(any::<u8>(), 0..48)).prop_map(|(len, body)| {
            let mut v = len.to_le_bytes().to_vec();
            v.extend(body);
            v
        }),
        2 => vec(any::<u8>(), 0..48).prop_map(|b| framed(&b)),
        1 => any::<u32>().prop_map(|len| len.to_le_bytes().to_vec()),
    ]
}

fn noise_stream() -> impl Strategy<Value = Vec<u8>> {
    vec(piece(), 0..8).prop_map(|p| p.concat())
}

/// Read sizes (cycled) and whether the stream stalls before each read.
fn chunking() -> impl Strategy<Value = (Vec<usize>, bool)> {
    (
        vec(prop_oneof![3 => 1usize..=16, 1 => 1usize..=8192], 1..6),
        any::<bool>(),
    )
}

fn frame_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        16 => vec(any::<u8>(), 0..64),
        4 => vec(any::<u8>(), 0..3000),
        // Past the size at which the reader gives its buffer back.
        1 => (65_000usize..70_000, any::<u8>())
            .prop_map(|(n, b)| (0..n).map(|i| b.wrapping_add(i as u8)).collect()),
    ]
}

/// An owned [`Header`], for generating.
#[derive(Debug, Clone)]
enum OwnedHeader {
    Call {
        id: u64,
        target: String,
        timeout_ms: u64,
    },
    Notify {
        target: String,
    },
    Reply(u64),
    Error(u64),
    Cancel(u64),
    Ping(u64),
    Pong(u64),
    Goodbye,
    Shutdown,
    Item(u64, Way),
    End(u64, Way),
    Credit(u64, Way, u32),
    Stop(u64),
}

impl OwnedHeader {
    fn header(&self) -> Header<'_> {
        match self {
            OwnedHeader::Call {
                id,
                target,
                timeout_ms,
            } => Header::Call {
                id: *id,
                target,
                timeout_ms: *timeout_ms,
            },
            OwnedHeader::Notify { target } => Header::Notify { target },
            OwnedHeader::Reply(id) => Header::Reply { id: *id },
            OwnedHeader::Error(id) => Header::Error { id: *id },
            OwnedHeader::Cancel(id) => Header::Cancel { id: *id },
            OwnedHeader::Ping(id) => Header::Ping { id: *id },
            OwnedHeader::Pong(id) => Header::Pong { id: *id },
            OwnedHeader::Goodbye => Header::Goodbye,
            OwnedHeader::Shutdown => Header::Shutdown,
            OwnedHeader::Item(id, way) => Header::Item { id: *id, way: *way },
            OwnedHeader::End(id, way) => Header::End { id: *id, way: *way },
            OwnedHeader::Credit(id, way, bytes) => Header::Credit {
                id: *id,
                way: *way,
                bytes: *bytes,
            },
            OwnedHeader::Stop(id) => Header::Stop { id: *id },
        }
    }
}

fn owned_header<T, I>(target: T, id: I, closing_weight: u32) -> impl Strategy<Value = OwnedHeader>
where
    T: Strategy<Value = String> + Clone + 'static,
    I: Strategy<Value = u64> + Clone + 'static,
{
    prop_oneof![
        3 => (id.clone(), target.clone(), any::<u64>()).prop_map(|(id, target, timeout_ms)| {
            OwnedHeader::Call { id, target, timeout_ms }
        }),
        2 => target.prop_map(|target| OwnedHeader::Notify { target }),
        1 => id.clone().prop_map(OwnedHeader::Reply),
        1 => id.clone().prop_map(OwnedHeader::Error),
        1 => id.clone().prop_map(OwnedHeader::Cancel),
        1 => id.clone().prop_map(OwnedHeader::Ping),
        1 => id.clone().prop_map(OwnedHeader::Pong),
        1 => (id.clone(), way()).prop_map(|(id, way)| OwnedHeader::Item(id, way)),
        1 => (id.clone(), way()).prop_map(|(id, way)| OwnedHeader::End(id, way)),
        1 => (id.clone(), way(), any::<u32>())
            .prop_map(|(id, way, bytes)| OwnedHeader::Credit(id, way, bytes)),
        1 => id.prop_map(OwnedHeader::Stop),
        closing_weight => Just(OwnedHeader::Goodbye),
        closing_weight => Just(OwnedHeader::Shutdown),
    ]
}

fn way() -> impl Strategy<Value = Way> + Clone {
    prop_oneof![Just(Way::Down), Just(Way::Up)]
}

fn any_header() -> impl Strategy<Value = OwnedHeader> {
    owned_header(any::<String>(), any::<u64>(), 1)
}

/// Bytes that often start like a header: a plausible variant index, or a
/// valid header with a byte flipped or cut short.
fn header_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..40),
        (0u8..10, vec(any::<u8>(), 0..40)).prop_map(|(tag, rest)| {
            let mut v = vec![tag];
            v.extend(rest);
            v
        }),
        (
            any_header(),
            vec(any::<u8>(), 0..8),
            option::of((any::<Index>(), any::<u8>())),
            option::of(any::<Index>()),
        )
            .prop_map(|(h, tail, flip, cut)| {
                let mut v = postcard::to_stdvec(&h.header()).unwrap();
                v.extend(tail);
                mutate(v, flip, cut)
            }),
    ]
}

fn hello() -> impl Strategy<Value = Handshake> {
    (
        any::<u32>(),
        any::<u32>(),
        option::weighted(0.15, prop::collection::vec(any::<u8>(), 0..40)),
        option::of("[a-z]{0,8}"),
    )
        .prop_map(|(max_frame, max_in_flight, pake, name)| {
            Handshake::Hello(Hello {
                max_frame,
                max_in_flight,
                pake,
                name,
            })
        })
}

fn verdict() -> impl Strategy<Value = Handshake> {
    prop_oneof![
        3 => (any::<u64>(), option::weighted(0.15, any::<[u8; 32]>())).prop_map(
            |(connection_id, confirm)| Handshake::Verdict(Verdict::Accepted {
                connection_id,
                confirm,
            })
        ),
        2 => ".{0,16}".prop_map(|m| Handshake::Verdict(Verdict::Rejected(Rejection::Refused(m)))),
    ]
}

fn handshake_message() -> impl Strategy<Value = Handshake> {
    prop_oneof![
        4 => hello(),
        1 => any::<[u8; 32]>().prop_map(Handshake::Confirm),
        4 => verdict(),
    ]
}

/// What a raw remote sends during a handshake: a preamble (mostly right),
/// then handshake messages and noise, sometimes damaged.
fn handshake_script() -> impl Strategy<Value = Vec<u8>> {
    let mut valid = MAGIC.to_vec();
    valid.extend_from_slice(&VERSION.to_be_bytes());
    let preamble = prop_oneof![
        6 => Just(valid),
        1 => any::<u16>().prop_map(|v| {
            let mut p = MAGIC.to_vec();
            p.extend_from_slice(&v.to_be_bytes());
            p
        }),
        1 => vec(any::<u8>(), 0..8),
    ];
    let framed_message = |m: Handshake| framed(&postcard::to_stdvec(&m).unwrap());
    let first = prop_oneof![
        6 => hello().prop_map(framed_message),
        1 => handshake_message().prop_map(framed_message),
        1 => piece(),
    ];
    let second = prop_oneof![
        4 => verdict().prop_map(framed_message),
        1 => handshake_message().prop_map(framed_message),
        1 => piece(),
    ];
    let extra = vec(
        prop_oneof![handshake_message().prop_map(framed_message), piece()],
        0..2,
    );
    (
        preamble,
        first,
        second,
        extra,
        option::weighted(0.2, (any::<Index>(), any::<u8>())),
        option::weighted(0.15, any::<Index>()),
    )
        .prop_map(|(pre, first, second, extra, flip, cut)| {
            mutate([pre, first, second, extra.concat()].concat(), flip, cut)
        })
}

// ---------------------------------------------------------------------------
// References

// ---------------------------------------------------------------------------
// (a) The frame reader

/// Reads every frame until the end or an error, checking the limit.
async fn read_all(
    reader: &mut FrameReader<Chunked>,
    limit: u32,
) -> Result<(Vec<Bytes>, Result<(), ReadError>), TestCaseError> {
    let mut frames = Vec::new();
    loop {
        match reader.next_frame().await {
            Ok(Some(f)) => {
                prop_assert!(f.len() <= limit as usize, "{} > {limit}", f.len());
                frames.push(f);
            }
            Ok(None) => return Ok((frames, Ok(()))),
            Err(e) => return Ok((frames, Err(e))),
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any byte stream, read in any chunks, yields exactly the frames a
    /// reference parser finds, none over the limit, and ends the same way.
    #[test]
    fn frame_reader_on_arbitrary_streams(
        stream in noise_stream(),
        limit in prop_oneof![0u32..64, any::<u32>()],
        (sizes, stall) in chunking(),
    ) {
        let (want, end) = frames_of(&stream, limit);
        let mut reader = FrameReader::new(Chunked::new(stream.clone(), sizes, stall), limit);
        let (got, result) = RT.with(|rt| rt.block_on(read_all(&mut reader, limit)))?;
        let got: Vec<&[u8]> = got.iter().map(|f| &f[..]).collect();
        prop_assert_eq!(got, want);
        match (result, end) {
            (Ok(()), End::Clean) => {}
            (Err(ReadError::TooLarge { size, limit: l }), End::TooLarge(want)) => {
                prop_assert_eq!(size, want);
                prop_assert_eq!(l, u64::from(limit));
            }
            (Err(ReadError::Truncated { .. }), End::Truncated) => {}
            (got, want) => prop_assert!(false, "ended with {got:?}, want {want:?}"),
        }
    }

    /// Valid frames (after a raw preamble) come back intact however the
    /// bytes are chunked, with the limit exactly at the largest frame.
    #[test]
    fn frame_reader_reassembles_valid_frames(
        preamble in vec(any::<u8>(), 0..8),
        bodies in vec(frame_body(), 0..8),
        (sizes, stall) in chunking(),
    ) {
        let limit = bodies.iter().map(Vec::len).max().unwrap_or(0) as u32;
        let mut stream = preamble.clone();
        for b in &bodies {
            stream.extend(framed(b));
        }
        let mut reader = FrameReader::new(Chunked::new(stream, sizes, stall), limit);
        RT.with(|rt| rt.block_on(async {
            let mut pre = vec![0; preamble.len()];
            reader.read_raw(&mut pre).await.unwrap();
            prop_assert_eq!(&pre, &preamble);
            let (got, result) = read_all(&mut reader, limit).await?;
            prop_assert!(result.is_ok(), "{result:?}");
            prop_assert_eq!(got.len(), bodies.len());
            for (g, b) in got.iter().zip(&bodies) {
                prop_assert_eq!(&g[..], &b[..]);
            }
            Ok(())
        }))?;
    }
}

// ---------------------------------------------------------------------------
// (b) The frame header

proptest! {
    #![proptest_config(cases(1024))]

    /// Arbitrary bytes never make `decode_header` panic; what it accepts is
    /// a header that encodes (no longer than it was read) and decodes to
    /// itself, with a payload borrowed from the input's tail.
    #[test]
    fn decode_header_on_arbitrary_bytes(body in header_like()) {
        if let Ok((header, payload)) = decode_header(&body) {
            let consumed = body.len() - payload.len();
            prop_assert_eq!(payload.as_ptr(), body[consumed..].as_ptr());
            if let Header::Call { target, .. } | Header::Notify { target } = &header {
                let range = body.as_ptr_range();
                prop_assert!(range.contains(&target.as_ptr()) || target.is_empty());
            }
            let mut buf = Vec::new();
            encode_frame(&mut buf, &header, &()).unwrap();
            let again = &buf[LEN_PREFIX..];
            // postcard accepts over-long varints; its own encoding is the shortest.
            prop_assert!(again.len() <= consumed);
            let (decoded, rest) = decode_header(again).unwrap();
            prop_assert_eq!(decoded, header);
            prop_assert!(rest.is_empty());
        }
    }

    /// Every header round-trips through `encode_frame` and `decode_header`,
    /// behind whatever was already in the buffer, and no proper prefix of
    /// an encoded header decodes.
    #[test]
    fn header_round_trips(
        header in any_header(),
        payload in vec(any::<u8>(), 0..64),
        queued in vec(any::<u8>(), 0..16),
    ) {
        let header = header.header();
        let mut buf = queued.clone();
        encode_frame(&mut buf, &header, &payload).unwrap();
        prop_assert_eq!(&buf[..queued.len()], &queued[..]);
        let frame = &buf[queued.len()..];
        let len = u32::from_le_bytes(frame[..LEN_PREFIX].try_into().unwrap());
        prop_assert_eq!(len as usize, frame.len() - LEN_PREFIX);
        let body = &frame[LEN_PREFIX..];
        let (decoded, rest) = decode_header(body).unwrap();
        prop_assert_eq!(&decoded, &header);
        prop_assert_eq!(postcard::from_bytes::<Vec<u8>>(rest).unwrap(), payload);
        let header_len = body.len() - rest.len();
        for k in 0..header_len {
            prop_assert!(decode_header(&body[..k]).is_err(), "prefix of {k} bytes decoded");
        }
    }
}

// ---------------------------------------------------------------------------
// (c) The handshake

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(100);

proptest! {
    #![proptest_config(cases(64))]

    /// A raw remote sends arbitrary bytes (then closes its side or goes
    /// silent). Without a secret the handshake ends exactly as the reference
    /// says; with one it always fails. Either way it ends within its timeout
    /// and nothing panics.
    #[test]
    fn handshake_on_arbitrary_bytes(
        bytes in handshake_script(),
        accepting in any::<bool>(),
        eof in prop::bool::weighted(0.8),
        secret in prop::bool::weighted(0.2),
    ) {
        let panics = panics_so_far();
        let got = runtime().block_on(async {
            // Everything the remote says is in the pipe before the handshake
            // starts, so only a real wait for more bytes can time out.
            let (mut remote, local) = tokio::io::duplex(64 * 1024);
            remote.write_all(&bytes).await.unwrap();
            if eof {
                remote.shutdown().await.unwrap();
            }
            let mut config = PeerConfig::default().handshake_timeout(HANDSHAKE_TIMEOUT);
            if secret {
                config = config.secret("s3cret");
            }
            let run = async {
                let peer = if accepting {
                    Peer::accept(local, Registry::new(), config, 7).await
                } else {
                    Peer::connect(local, Registry::new(), config).await
                };
                peer.map(|p| p.connection_id())
            };
            let got = tokio::time::timeout(HANDSHAKE_TIMEOUT * 50, run).await;
            drop(remote);
            got
        });
        let Ok(got) = got else {
            return Err(TestCaseError::fail("the handshake outlived its own timeout"));
        };
        if secret {
            prop_assert!(got.is_err(), "authenticated without the secret: {got:?}");
        } else {
            let want = expect_handshake(&bytes, eof, accepting);
            prop_assert!(agrees(&got, &want), "got {got:?}, want {want:?}");
        }
        prop_assert_eq!(panics_so_far(), panics);
    }
}

// ---------------------------------------------------------------------------
// (d) An established connection

/// An object for random calls to land on.
pub struct Echo;

#[expose]
impl Echo {
    /// Returns its argument.
    pub fn echo(&self, x: u32) -> u32 {
        x
    }

    /// Returns its argument after yielding once.
    pub async fn later(&self, x: u32) -> u32 {
        tokio::task::yield_now().await;
        x
    }
}

const CONN_MAX_FRAME: u32 = 1024;
/// The id of the ping that checks a connection still answers; random frames
/// use smaller ids.
const PROBE: u64 = 1 << 40;

fn connection_piece() -> impl Strategy<Value = Vec<u8>> {
    let target = prop_oneof![
        Just("Echo.echo".to_string()),
        Just("Echo.later".to_string()),
        Just("Echo.nope".to_string()),
        "[A-Za-z.]{0,12}",
    ];
    let payload = prop_oneof![
        Just(Vec::new()),
        vec(any::<u8>(), 0..12),
        any::<u32>().prop_map(|x| postcard::to_stdvec(&(x,)).unwrap()),
    ];
    prop_oneof![
        12 => (owned_header(target, 0u64..1 << 32, 1), payload).prop_map(|(h, p)| {
            let mut body = postcard::to_stdvec(&h.header()).unwrap();
            body.extend(p);
            framed(&body)
        }),
        1 => vec(any::<u8>(), 0..16),
        1 => piece(),
    ]
}

fn connection_script() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(connection_piece(), 0..8),
        option::weighted(0.2, (any::<Index>(), any::<u8>())),
        option::weighted(0.1, any::<Index>()),
    )
        .prop_map(|(pieces, flip, cut)| mutate(pieces.concat(), flip, cut))
}

/// Performs the connecting side of the handshake with raw bytes; returns a
/// reader over what the peer sends next.
async fn handshake_by_hand(
    rd: tokio::io::ReadHalf<tokio::io::DuplexStream>,
    wr: &mut tokio::io::WriteHalf<tokio::io::DuplexStream>,
) -> FrameReader<tokio::io::ReadHalf<tokio::io::DuplexStream>> {
    let hello = Handshake::Hello(Hello {
        max_frame: 1 << 20,
        max_in_flight: 16,
        pake: None,
        name: Some("raw".into()),
    });
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend(framed(&postcard::to_stdvec(&hello).unwrap()));
    wr.write_all(&out).await.unwrap();

    let mut reader = FrameReader::new(rd, 1 << 20);
    let mut pre = [0u8; 6];
    reader.read_raw(&mut pre).await.unwrap();
    assert_eq!(pre[..4], MAGIC);
    let mut verdict = None;
    for _ in 0..2 {
        let frame = reader.next_frame().await.unwrap().unwrap();
        if let Handshake::Verdict(v) = postcard::from_bytes(&frame).unwrap() {
            verdict = Some(v);
        }
    }
    assert_eq!(
        verdict,
        Some(Verdict::Accepted {
            connection_id: 9,
            confirm: None
        })
    );
    reader
}

async fn garbage_after_handshake(script: Vec<u8>, fate: Fate) -> Result<(), TestCaseError> {
    let (remote, local) = tokio::io::duplex(256 * 1024);
    let (rd, mut wr) = tokio::io::split(remote);
    let registry = Registry::new();
    registry.expose(Echo);
    let config = PeerConfig::default().max_frame(CONN_MAX_FRAME);
    let (peer, mut frames) = tokio::join!(
        Peer::accept(local, registry, config, 9),
        handshake_by_hand(rd, &mut wr),
    );
    let peer = peer.unwrap();

    // Drain what the peer sends; report pongs.
    let (pongs, mut pong_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(f)) = frames.next_frame().await {
            if let Ok((Header::Pong { id }, _)) = decode_header(&f) {
                let _ = pongs.send(id);
            }
        }
    });

    let written = wr.write_all(&script).await;
    if matches!(fate, Fate::Open | Fate::Partial) {
        prop_assert!(written.is_ok(), "{written:?}");
    }
    if fate == Fate::Open {
        let mut probe = Vec::new();
        encode_frame(&mut probe, &Header::Ping { id: PROBE }, &()).unwrap();
        wr.write_all(&probe).await.unwrap();
        loop {
            match pong_rx.recv().await {
                Some(PROBE) => break,
                Some(_) => {}
                None => prop_assert!(false, "the peer stopped answering"),
            }
        }
        prop_assert!(peer.is_connected());
    }
    let _ = wr.shutdown().await;
    let reason = peer.closed().await;
    match fate {
        Fate::Open | Fate::Goodbye => {
            prop_assert_eq!(reason, DisconnectReason::ClosedByPeer)
        }
        // A repeated call id ends the connection if the first call was
        // still running; whether it was depends on timing.
        Fate::MaybeDuplicate => prop_assert!(
            reason == DisconnectReason::ClosedByPeer
                || matches!(&reason, DisconnectReason::Protocol(m) if m.contains("already in flight")),
            "{reason:?}"
        ),
        Fate::Shutdown => prop_assert_eq!(reason, DisconnectReason::Shutdown),
        Fate::Partial | Fate::Malformed => {
            prop_assert!(
                matches!(reason, DisconnectReason::Protocol(_)),
                "{reason:?}"
            )
        }
    }
    prop_assert!(!peer.is_connected());
    Ok(())
}

proptest! {
    #![proptest_config(cases(64))]

    /// After a correct handshake, a raw remote writes arbitrary bytes (mostly
    /// frames, some malformed), then ends its stream. The peer keeps
    /// answering while the frames are well formed, closes with a protocol
    /// error on a bad one (or when the stream ends inside a frame), closes
    /// on a goodbye or a shutdown notice, and never panics.
    #[test]
    fn connection_survives_or_closes_on_garbage(script in connection_script()) {
        let fate = fate_of(&script, CONN_MAX_FRAME);
        let panics = panics_so_far();
        let run = async {
            tokio::time::timeout(Duration::from_secs(20), garbage_after_handshake(script, fate)).await
        };
        match runtime().block_on(run) {
            Ok(r) => r?,
            Err(_) => return Err(TestCaseError::fail(format!("stuck (expected {fate:?})"))),
        }
        prop_assert_eq!(panics_so_far(), panics);
    }
}
