//! Reference models of what must happen to the bytes a remote sends: the
//! frames a correct reader yields, how a handshake without a shared secret
//! must end, and what frames after a good handshake do to the connection. Shared by the property tests (`fuzz_props.rs`) and the
//! cargo-fuzz targets in `fuzz/`, which include this file by path.

// Each user needs only part of it.
#![allow(dead_code)]

use rpc_core::__wire::{
    decode_header, Handshake, Header, Rejection, Verdict, HANDSHAKE_MAX_FRAME, LEN_PREFIX, MAGIC,
    VERSION,
};
use rpc_core::RpcError;

/// How a stream of frames ends.
#[derive(Debug, PartialEq)]
pub(crate) enum End {
    Clean,
    TooLarge(u64),
    Truncated,
}

/// The frames a correct reader yields from `stream` under `limit`, and how
/// the stream ends.
pub(crate) fn frames_of(mut stream: &[u8], limit: u32) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    loop {
        if stream.is_empty() {
            return (frames, End::Clean);
        }
        if stream.len() < LEN_PREFIX {
            return (frames, End::Truncated);
        }
        let len = u32::from_le_bytes(stream[..LEN_PREFIX].try_into().unwrap());
        if len > limit {
            return (frames, End::TooLarge(u64::from(len)));
        }
        let total = LEN_PREFIX + len as usize;
        if stream.len() < total {
            return (frames, End::Truncated);
        }
        frames.push(&stream[LEN_PREFIX..total]);
        stream = &stream[total..];
    }
}

/// How a handshake without a shared secret must end, given everything the
/// remote sent and whether it then closed its side (`eof`) or went silent.
#[derive(Debug)]
pub(crate) enum Expect {
    /// Success; for the connecting side, with this connection id.
    Ok(Option<u64>),
    Protocol,
    Version(u16),
    AuthFailed,
    Timeout,
    Rejected(Rejection),
}

/// The next handshake message, or how the handshake fails reading it.
pub(crate) fn next_message(rest: &mut &[u8], eof: bool) -> Result<Handshake, Expect> {
    let starved = if eof {
        Expect::Protocol
    } else {
        Expect::Timeout
    };
    if rest.len() < LEN_PREFIX {
        return Err(starved);
    }
    let len = u32::from_le_bytes(rest[..LEN_PREFIX].try_into().unwrap());
    if len > HANDSHAKE_MAX_FRAME {
        return Err(Expect::Protocol);
    }
    let total = LEN_PREFIX + len as usize;
    if rest.len() < total {
        return Err(starved);
    }
    let body = &rest[LEN_PREFIX..total];
    *rest = &rest[total..];
    postcard::from_bytes(body).map_err(|_| Expect::Protocol)
}

/// What a side without a secret must conclude from the remote's bytes.
pub(crate) fn expect_handshake(bytes: &[u8], eof: bool, accepting: bool) -> Expect {
    if bytes.len() < 6 {
        return if eof {
            Expect::Protocol
        } else {
            Expect::Timeout
        };
    }
    if bytes[..4] != MAGIC {
        return Expect::Protocol;
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Expect::Version(version);
    }
    let mut rest = &bytes[6..];
    let hello = match next_message(&mut rest, eof) {
        Ok(Handshake::Hello(h)) => h,
        Ok(_) => return Expect::Protocol,
        Err(e) => return e,
    };
    if hello.pake.is_some() {
        return Expect::AuthFailed;
    }
    if accepting {
        return Expect::Ok(None);
    }
    match next_message(&mut rest, eof) {
        Ok(Handshake::Verdict(Verdict::Accepted { connection_id, .. })) => {
            Expect::Ok(Some(connection_id))
        }
        Ok(Handshake::Verdict(Verdict::Rejected(e))) => Expect::Rejected(e),
        Ok(_) => Expect::Protocol,
        Err(e) => e,
    }
}

/// Whether a handshake's outcome (the connection id, or the error) is the
/// expected one.
pub(crate) fn agrees(got: &Result<u64, RpcError>, want: &Expect) -> bool {
    match (got, want) {
        (Ok(_), Expect::Ok(None)) => true,
        (Ok(id), Expect::Ok(Some(want))) => id == want,
        (Err(e), Expect::Rejected(r)) => match r {
            Rejection::AuthFailed(m) => *e == RpcError::AuthFailed(m.clone()),
            Rejection::Refused(m) => *e == RpcError::Refused(m.clone()),
            Rejection::Protocol(m) => *e == RpcError::Protocol(format!("the server says: {m}")),
        },
        (Err(RpcError::Protocol(_)), Expect::Protocol) => true,
        (Err(RpcError::VersionMismatch { ours, theirs }), Expect::Version(v)) => {
            *ours == VERSION && theirs == v
        }
        (Err(RpcError::AuthFailed(_)), Expect::AuthFailed) => true,
        (Err(RpcError::HandshakeTimeout(_)), Expect::Timeout) => true,
        _ => false,
    }
}

/// What garbage after a good handshake must do to the connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fate {
    /// Whole, well-formed frames only: the connection keeps working.
    Open,
    /// Ends inside a frame: open until the stream ends, then a protocol error.
    Partial,
    /// A frame over the limit or with a bad header: closed, protocol error.
    Malformed,
    /// A goodbye frame: closed by the peer.
    Goodbye,
    /// A shutdown frame: closed, the remote is shutting down.
    Shutdown,
    /// Well-formed frames, but one call id comes twice: open, or closed
    /// with a protocol error if the first call was still running.
    MaybeDuplicate,
}

/// What a stream of bytes after a good handshake must do to a connection
/// whose frame limit is `limit`.
pub(crate) fn fate_of(mut stream: &[u8], limit: u32) -> Fate {
    let mut ids = std::collections::HashSet::new();
    let mut repeated = false;
    loop {
        if stream.is_empty() {
            return if repeated {
                Fate::MaybeDuplicate
            } else {
                Fate::Open
            };
        }
        if stream.len() < LEN_PREFIX {
            return Fate::Partial;
        }
        let len = u32::from_le_bytes(stream[..LEN_PREFIX].try_into().unwrap());
        if len > limit {
            return Fate::Malformed;
        }
        let total = LEN_PREFIX + len as usize;
        if stream.len() < total {
            return Fate::Partial;
        }
        match decode_header(&stream[LEN_PREFIX..total]) {
            Err(_) => return Fate::Malformed,
            Ok((Header::Goodbye, _)) => return Fate::Goodbye,
            Ok((Header::Shutdown, _)) => return Fate::Shutdown,
            Ok((Header::Call { id, .. }, _)) => repeated |= !ids.insert(id),
            // A list of handle names that does not decode, or a name that
            // is not one, breaks the protocol.
            Ok((Header::Handles, names)) => match postcard::from_bytes::<Vec<String>>(names) {
                Ok(names) if names.iter().all(|n| is_handle_name(n)) => {}
                _ => return Fate::Malformed,
            },
            Ok((Header::Release, names)) => {
                if postcard::from_bytes::<Vec<String>>(names).is_err() {
                    return Fate::Malformed;
                }
            }
            Ok(_) => {}
        }
        stream = &stream[total..];
    }
}

/// Whether `name` has the form of an object handle's name: `rpc.ref.`
/// and 32 hex digits (docs/wire.md).
fn is_handle_name(name: &str) -> bool {
    name.len() == 40
        && name.starts_with("rpc.ref.")
        && name[8..].bytes().all(|b| b.is_ascii_hexdigit())
}
