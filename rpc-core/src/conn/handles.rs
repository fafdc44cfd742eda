//! Object handles on the connection: the objects this side handed out
//! (exports), the count of handles it holds to the remote's objects
//! (imports), and the scopes in which a [`Remote`](crate::Remote) is
//! encoded or decoded.
//!
//! Owns: the export table and the import count, both bounded by
//! `PeerConfig::max_handles`; the `Handles` frame that announces what a
//! frame carries and the `Release` frame that gives handles back.
//!
//! A `Remote` is encoded inside [`encoding`], around one frame's push: the
//! object goes into the export table under a fresh, unguessable name, the
//! name goes into the payload, and the outbox puts a `Handles` frame
//! listing the names just before the frame (in the same lock, so nothing
//! comes between them). If the frame is not queued, the exports are taken
//! back. The receiver keeps the announced names with that frame
//! ([`FrameHandles`]): decoding the payload claims them (inside
//! [`decoding`]), and whatever the frame did not claim when it is dropped
//! (its call refused, its caller gone, its arguments wrong) is released at
//! once. So every handle handed out is either held by a [`Remote`] on the
//! other side or released, and closing the connection releases them all.
//!
//! Lock: the export table's mutex is taken while the outbox lock is held
//! (encoding a `Remote`), so it takes nothing itself, and no object is
//! dropped while it is held (an object's drop may release handles of its
//! own, which queues a frame).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{lock, Conn};
use crate::dispatch::{Service, Target};
use crate::error::RemoteError;
use crate::peer::Peer;
use crate::wire::Header;

/// Every handle's name starts with this; the rest is 128 random bits in hex.
pub(crate) const HANDLE_PREFIX: &str = "rpc.ref.";

/// The length of a handle's name.
const NAME_LEN: usize = HANDLE_PREFIX.len() + 32;

/// One object handed out on this connection.
struct Export {
    service: Arc<dyn Service>,
    methods: &'static [&'static str],
}

/// The connection's handles both ways.
pub(crate) struct Handles {
    exports: Mutex<HashMap<Arc<str>, Export>>,
    /// Handles to the remote's objects that this side holds (announced and
    /// not yet released).
    imports: AtomicUsize,
    /// The most of each.
    limit: usize,
}

/// How many handles a connection has out and in; see
/// [`Peer::handle_counts`](crate::Peer::handle_counts).
///
/// # Examples
///
/// ```
/// use rpc_core::{Peer, PeerConfig, Registry};
///
/// let peer = Peer::detached(Registry::new(), PeerConfig::default());
/// let counts = peer.handle_counts();
/// assert_eq!((counts.exported, counts.imported), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HandleCounts {
    /// Objects of this side that the remote holds handles to.
    pub exported: usize,
    /// Handles to the remote's objects that this side holds.
    pub imported: usize,
}

impl Handles {
    pub(crate) fn new(limit: usize) -> Handles {
        Handles {
            exports: Mutex::new(HashMap::new()),
            imports: AtomicUsize::new(0),
            limit,
        }
    }
}

impl Conn {
    /// The handles this connection has out and in.
    pub(crate) fn handle_counts(&self) -> HandleCounts {
        HandleCounts {
            exported: lock(&self.handles.exports).len(),
            imported: self.handles.imports.load(Ordering::Acquire),
        }
    }

    /// Hands `service` out under a fresh name.
    fn export(
        &self,
        service: Arc<dyn Service>,
        methods: &'static [&'static str],
    ) -> Result<Arc<str>, String> {
        if self.is_closed() {
            return Err("the connection is closed".into());
        }
        let name: Arc<str> = fresh_name()?.into();
        let mut exports = lock(&self.handles.exports);
        if exports.len() >= self.handles.limit {
            return Err(format!(
                "{} object handles are already out on this connection, its limit \
                 (`PeerConfig::max_handles`); the other side must drop some first",
                self.handles.limit
            ));
        }
        exports.insert(name.clone(), Export { service, methods });
        Ok(name)
    }

    /// Takes back handed-out objects (released by the remote, or never
    /// sent); unknown names are ignored. The objects are dropped after the
    /// lock.
    pub(super) fn unexport(&self, names: impl IntoIterator<Item = impl AsRef<str>>) {
        let gone: Vec<Export> = {
            let mut exports = lock(&self.handles.exports);
            names
                .into_iter()
                .filter_map(|name| exports.remove(name.as_ref()))
                .collect()
        };
        drop(gone);
    }

    /// Drops every handed-out object (the connection closed).
    pub(super) fn drop_handles(&self) {
        let gone = std::mem::take(&mut *lock(&self.handles.exports));
        drop(gone);
    }

    /// The target of a call through a handle this side handed out.
    pub(super) fn handle_target(&self, target: &str) -> Result<Arc<Target>, RemoteError> {
        let (object, method) = target.rsplit_once('.').unwrap_or((target, ""));
        let exports = lock(&self.handles.exports);
        let Some(export) = exports.get(object) else {
            return Err(RemoteError::DeadHandle(object.to_string()));
        };
        let Some(index) = export.methods.iter().position(|m| *m == method) else {
            return Err(RemoteError::UnknownMethod {
                object: object.to_string(),
                method: method.to_string(),
            });
        };
        Ok(Arc::new(Target {
            service: export.service.clone(),
            index,
            object: Arc::from(object),
            method: Arc::from(method),
        }))
    }

    /// The remote announced the handles its next frame carries. Over this
    /// side's limit, they are all released at once and the frame cannot
    /// claim them. A name of the wrong form is a protocol error.
    pub(super) fn announced(&self, names: Vec<String>) -> Result<FrameHandles, String> {
        if let Some(bad) = names.iter().find(|n| !is_handle_name(n)) {
            return Err(format!("`{bad}` is not an object handle's name"));
        }
        let n = names.len();
        let taken =
            self.handles
                .imports
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                    (held + n <= self.handles.limit).then_some(held + n)
                });
        let names: Vec<Arc<str>> = names.into_iter().map(Arc::from).collect();
        let refused = taken.is_err().then_some(self.handles.limit);
        if refused.is_some() {
            self.send_release(&names);
        }
        Ok(FrameHandles {
            conn: self.me.clone(),
            names: Mutex::new(names.into_iter().map(|n| (n, None)).collect()),
            refused,
        })
    }

    /// This side holds these handles no more: counts them out and tells
    /// the owner.
    fn release_imported(&self, names: &[Arc<str>]) {
        if names.is_empty() {
            return;
        }
        self.handles
            .imports
            .fetch_sub(names.len(), Ordering::AcqRel);
        self.send_release(names);
    }

    fn send_release(&self, names: &[Arc<str>]) {
        let names: Vec<&str> = names.iter().map(|n| &**n).collect();
        // Closed: the owner dropped them all already.
        let _ = self.out.push(&Header::Release, &names);
    }
}

/// Whether `name` has the form of a handle's name.
pub(crate) fn is_handle_name(name: &str) -> bool {
    name.len() == NAME_LEN
        && name.starts_with(HANDLE_PREFIX)
        && name[HANDLE_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

/// 128 bits from the operating system's generator, as a handle's name.
fn fresh_name() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness for a handle: {e}"))?;
    let mut name = String::with_capacity(NAME_LEN);
    name.push_str(HANDLE_PREFIX);
    for b in bytes {
        name.push_str(&format!("{b:02x}"));
    }
    Ok(name)
}

/// An announced handle's name, and the handle made when the payload
/// claimed it.
type Announced = (Arc<str>, Option<Arc<Imported>>);

/// The handles announced for one received frame, kept with the frame (its
/// call, or its reply) until it is done with.
pub(crate) struct FrameHandles {
    conn: Weak<Conn>,
    /// Each announced name, and the handle made when the payload claimed it.
    names: Mutex<Vec<Announced>>,
    /// The limit that refused them all (they were released on arrival).
    refused: Option<usize>,
}

impl Drop for FrameHandles {
    fn drop(&mut self) {
        if self.refused.is_some() {
            return;
        }
        let names = std::mem::take(&mut *lock(&self.names));
        let unclaimed: Vec<Arc<str>> = names
            .into_iter()
            .filter_map(|(name, claimed)| claimed.is_none().then_some(name))
            .collect();
        if let Some(conn) = self.conn.upgrade() {
            conn.release_imported(&unclaimed);
        }
    }
}

/// A handle to one of the remote's objects, held by every clone of the
/// [`Remote`](crate::Remote) it was decoded into: the last one to go
/// releases it.
pub(crate) struct Imported {
    name: Arc<str>,
    conn: Weak<Conn>,
}

impl Imported {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Imported {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.upgrade() {
            conn.release_imported(std::slice::from_ref(&self.name));
        }
    }
}

impl std::fmt::Debug for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// What a `Remote` being encoded registers with, and what it exported so
/// far (taken back unless the frame is queued).
struct Encoding {
    conn: Weak<Conn>,
    exported: Vec<Arc<str>>,
}

/// What a `Remote` being decoded claims from.
struct Decoding {
    conn: Arc<Conn>,
    frame: Arc<FrameHandles>,
}

thread_local! {
    static ENCODING: RefCell<Option<Encoding>> = const { RefCell::new(None) };
    static DECODING: RefCell<Option<Decoding>> = const { RefCell::new(None) };
    /// Why the last handle on this thread could not be encoded or decoded:
    /// serde's custom errors reach postcard's caller without their text.
    static ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps `why` for the message of the postcard error it becomes.
pub(crate) fn failed(why: String) -> String {
    ERROR.with(|e| *e.borrow_mut() = Some(why.clone()));
    why
}

/// Why the last handle could not be encoded or decoded, if one could not.
pub(crate) fn take_error() -> Option<String> {
    ERROR.with(|e| e.borrow_mut().take())
}

/// Restores the scope that was current before, and takes back exports that
/// were not sent, even if the push panicked.
struct EncodingGuard(Option<Encoding>);

impl Drop for EncodingGuard {
    fn drop(&mut self) {
        let mine = ENCODING.with(|e| std::mem::replace(&mut *e.borrow_mut(), self.0.take()));
        if let Some(Encoding { conn, exported }) = mine {
            if let (false, Some(conn)) = (exported.is_empty(), conn.upgrade()) {
                conn.unexport(exported);
            }
        }
    }
}

/// Runs `push` (one frame's encoding) with `conn` as the connection that
/// `Remote`s in the payload are handed out on.
pub(crate) fn encoding<R>(conn: &Conn, push: impl FnOnce() -> R) -> R {
    let before = ENCODING.with(|e| {
        e.borrow_mut().replace(Encoding {
            conn: conn.me.clone(),
            exported: Vec::new(),
        })
    });
    let _guard = EncodingGuard(before);
    push()
}

/// Hands `service` out on the connection of the frame being encoded; its
/// name, for the payload.
pub(crate) fn export(
    service: Arc<dyn Service>,
    methods: &'static [&'static str],
) -> Result<Arc<str>, String> {
    ENCODING.with(|e| {
        let mut e = e.borrow_mut();
        let Some(scope) = e.as_mut() else {
            return Err(
                "a `Remote` can only travel as an argument or the return value of a call \
                 (or the argument of a notification), not in a stream's item or on its own"
                    .to_string(),
            );
        };
        let conn = scope
            .conn
            .upgrade()
            .ok_or_else(|| "the connection is closed".to_string())?;
        let name = conn.export(service, methods)?;
        scope.exported.push(name.clone());
        Ok(name)
    })
}

/// The handles the frame just encoded carries, for its `Handles` frame
/// (called by the outbox, under its lock, once the frame is encoded).
pub(crate) fn exported() -> Vec<Arc<str>> {
    ENCODING.with(|e| {
        e.borrow()
            .as_ref()
            .map(|scope| scope.exported.clone())
            .unwrap_or_default()
    })
}

/// The frame and its `Handles` frame are queued: the exports stay.
pub(crate) fn sent() {
    ENCODING.with(|e| {
        if let Some(scope) = e.borrow_mut().as_mut() {
            scope.exported.clear();
        }
    });
}

/// Runs `decode` with the handles announced for the frame it decodes, if
/// the frame carries any.
pub(crate) fn decoding<R>(
    conn: Option<Arc<Conn>>,
    frame: Option<&Arc<FrameHandles>>,
    decode: impl FnOnce() -> R,
) -> R {
    let (Some(conn), Some(frame)) = (conn, frame) else {
        return decode();
    };
    struct Restore(Option<Decoding>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DECODING.with(|d| *d.borrow_mut() = self.0.take());
        }
    }
    let before = DECODING.with(|d| {
        d.borrow_mut().replace(Decoding {
            conn,
            frame: frame.clone(),
        })
    });
    let _restore = Restore(before);
    decode()
}

/// Decodes a reply, with the handles announced for it.
pub(crate) fn decode_answer<R: serde::de::DeserializeOwned>(
    conn: &Arc<Conn>,
    answer: &super::pending::Answer,
) -> Result<R, postcard::Error> {
    let conn = answer.handles.as_ref().map(|_| conn.clone());
    decoding(conn, answer.handles.as_ref(), || {
        postcard::from_bytes::<R>(&answer.payload)
    })
}

/// Claims the handle `name` from the frame being decoded: the peer to call
/// it through, and the handle that keeps it alive.
pub(crate) fn import(name: &str) -> Result<(Peer, Arc<Imported>), String> {
    DECODING.with(|d| {
        let d = d.borrow();
        let Some(scope) = d.as_ref() else {
            return Err(format!(
                "object handle `{name}` was not announced with this message"
            ));
        };
        if let Some(limit) = scope.frame.refused {
            return Err(format!(
                "this side already holds {limit} object handles of this connection, its \
                 limit (`PeerConfig::max_handles`); the handles sent were released"
            ));
        }
        let mut names = lock(&scope.frame.names);
        let Some((_, claimed)) = names.iter_mut().find(|(n, _)| &**n == name) else {
            return Err(format!(
                "object handle `{name}` was not announced with this message"
            ));
        };
        let handle = claimed
            .get_or_insert_with(|| {
                Arc::new(Imported {
                    name: Arc::from(name),
                    conn: Arc::downgrade(&scope.conn),
                })
            })
            .clone();
        drop(names);
        let peer = scope.conn.owner.peer(&scope.conn);
        Ok((peer, handle))
    })
}
