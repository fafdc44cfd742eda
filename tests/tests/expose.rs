//! What `#[expose]` generates, exercised end to end over TCP and over a Unix
//! socket, in both directions: sync and async methods, renamed and skipped
//! methods, the block's default object name, one type exposed under two
//! names, `T`, `()` and `Result<T, E>` returns, `CallContext` in any
//! position, and the constants of the client stub.

use std::sync::{Arc, Mutex};

use rpc_core::{expose, CallContext, Peer, RemoteError, RpcError, Service};
use rpc_tests::{addresses, init_tracing, serve, within};
use rpc_transport::{Event, Server};
use serde::{Deserialize, Serialize};

/// An application error of the server-side object; it travels typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalcError {
    /// The result does not fit in an `i64`.
    Overflow {
        /// The left operand.
        a: i64,
        /// The right operand.
        b: i64,
    },
    /// Division by zero was asked for.
    DivideByZero,
}

/// The server-side object, exposed as `"calc"` by default.
pub struct Calculator {
    label: String,
    memory: Mutex<Vec<i64>>,
}

#[expose(name = "calc")]
impl Calculator {
    /// A calculator that says `label` when asked who it is. (No `self`: a
    /// local constructor, not a remote method.)
    pub fn new(label: &str) -> Self {
        Calculator {
            label: label.to_owned(),
            memory: Mutex::new(Vec::new()),
        }
    }

    /// Sync, returns a value.
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// Async, returns a value.
    pub async fn mul(&self, a: i64, b: i64) -> i64 {
        tokio::task::yield_now().await;
        a * b
    }

    /// Sync, returns `()`.
    pub fn store(&self, value: i64) {
        self.memory.lock().unwrap().push(value);
    }

    /// Async, returns `()`.
    pub async fn forget(&self) {
        tokio::task::yield_now().await;
        self.memory.lock().unwrap().clear();
    }

    /// What `store` kept.
    pub fn memory(&self) -> Vec<i64> {
        self.memory.lock().unwrap().clone()
    }

    /// Sync, returns `Result` with a typed error.
    pub fn checked_add(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        a.checked_add(b).ok_or(CalcError::Overflow { a, b })
    }

    /// Async, returns `Result` with a typed error.
    pub async fn divide(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        tokio::task::yield_now().await;
        a.checked_div(b).ok_or(CalcError::DivideByZero)
    }

    /// Sync, exposed as `sum`.
    #[expose(name = "sum")]
    pub fn total(&self, values: Vec<i64>) -> i64 {
        values.into_iter().sum()
    }

    /// Async, exposed as `describe`; says which object and method the call
    /// reached.
    #[expose(name = "describe")]
    pub async fn label(&self, cx: CallContext) -> String {
        format!("{} as {}.{}", self.label, cx.object(), cx.method())
    }

    /// Public but kept local.
    #[expose(skip)]
    pub fn reset(&self) -> usize {
        let mut memory = self.memory.lock().unwrap();
        let n = memory.len();
        memory.clear();
        n
    }

    /// The context first.
    pub fn ctx_first(&self, cx: CallContext, a: i64) -> (String, String, i64) {
        (cx.object().to_owned(), cx.method().to_owned(), a)
    }

    /// The context between two arguments.
    pub fn ctx_middle(&self, a: i64, cx: CallContext, b: i64) -> (u64, i64) {
        (cx.connection_id(), a - b)
    }

    /// The context last, in an async method.
    pub async fn ctx_last(&self, text: String, cx: CallContext) -> String {
        tokio::task::yield_now().await;
        format!("{text} from {}", cx.remote_name().unwrap_or("nobody"))
    }

    /// Writes `line` into the caller's notebook while the call is in flight,
    /// and returns how many lines the notebook then holds.
    pub async fn note_to_caller(&self, cx: CallContext, line: String) -> Result<u64, RpcError> {
        NotebookClient::new(cx.peer()).write(line).await
    }
}

/// An application error of the client-side object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoteError {
    /// There is no line at this index.
    NoSuchLine {
        /// The index asked for.
        index: u64,
        /// How many lines there are.
        len: u64,
    },
}

/// The client-side object the server calls, exposed as `"Notebook"`.
#[derive(Clone, Default)]
pub struct Notebook {
    lines: Arc<Mutex<Vec<String>>>,
}

#[expose]
impl Notebook {
    /// Sync, returns a value: the number of lines after writing.
    pub fn write(&self, line: String) -> u64 {
        let mut lines = self.lines.lock().unwrap();
        lines.push(line);
        lines.len() as u64
    }

    /// Async, returns `()`.
    pub async fn erase(&self) {
        tokio::task::yield_now().await;
        self.lines.lock().unwrap().clear();
    }

    /// Every line.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Async, exposed as `read_line`, returns `Result` with a typed error.
    #[expose(name = "read_line")]
    pub async fn line(&self, index: u64) -> Result<String, NoteError> {
        let lines = self.lines.lock().unwrap();
        lines
            .get(index as usize)
            .cloned()
            .ok_or(NoteError::NoSuchLine {
                index,
                len: lines.len() as u64,
            })
    }

    /// The context of the call, as the client sees it.
    pub fn caller(&self, cx: CallContext) -> (u64, String, String) {
        (
            cx.connection_id(),
            cx.object().to_owned(),
            cx.method().to_owned(),
        )
    }

    /// Public but kept local.
    #[expose(skip)]
    pub fn burn(&self) {
        self.lines.lock().unwrap().clear();
    }
}

/// A server with two calculators (`"calc"` and `"calc2"`), a client
/// exposing a notebook, and the server's peer for that client.
struct Pair {
    _server: Server,
    client: Peer,
    server_side: Peer,
    notebook: Notebook,
}

async fn pair(addr: &str) -> Pair {
    let server = Server::builder()
        .expose(Calculator::new("first"))
        .expose_as("calc2", Calculator::new("second"))
        .bind(addr)
        .await
        .unwrap();
    let mut events = server.events();
    let notebook = Notebook::default();
    let client = rpc_transport::connect(server.local_addr())
        .name("tester")
        .expose(notebook.clone())
        .await
        .unwrap();
    let server_side = loop {
        match events.recv().await {
            Some(Event::Connected(peer)) => break peer,
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    };
    Pair {
        _server: server,
        client,
        server_side,
        notebook,
    }
}

fn unknown_method(object: &str, method: &str) -> RpcError {
    RpcError::Remote(RemoteError::UnknownMethod {
        object: object.into(),
        method: method.into(),
    })
}

#[tokio::test]
async fn sync_and_async_methods_return_values_units_and_typed_errors() {
    init_tracing();
    for (addr, _dir) in addresses() {
        within(10, async {
            let p = pair(&addr).await;
            let calc = CalculatorClient::new(&p.client);

            assert_eq!(calc.add(40, 2).await.unwrap(), 42);
            assert_eq!(calc.mul(-6, 7).await.unwrap(), -42);

            // `()` both ways, and the effect is visible afterwards.
            calc.store(5).await.unwrap();
            let () = calc.store(-3).await.unwrap();
            assert_eq!(calc.memory().await.unwrap(), vec![5, -3]);
            let () = calc.forget().await.unwrap();
            assert_eq!(calc.memory().await.unwrap(), Vec::<i64>::new());

            // Typed errors arrive as the error type, inside `Ok`.
            assert_eq!(calc.checked_add(1, 2).await.unwrap(), Ok(3));
            assert_eq!(
                calc.checked_add(i64::MAX, 1).await.unwrap(),
                Err(CalcError::Overflow { a: i64::MAX, b: 1 })
            );
            assert_eq!(calc.divide(9, 2).await.unwrap(), Ok(4));
            assert_eq!(
                calc.divide(9, 0).await.unwrap(),
                Err(CalcError::DivideByZero)
            );
            // The same through a dynamic call.
            let r: Result<i64, CalcError> =
                p.client.call("calc.divide", &(1i64, 0i64)).await.unwrap();
            assert_eq!(r, Err(CalcError::DivideByZero));
        })
        .await;
    }
}

#[tokio::test]
async fn renamed_methods_answer_to_their_new_name_only_and_skipped_ones_not_at_all() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let p = pair(&addr).await;
            let calc = CalculatorClient::new(&p.client);

            // The stub keeps the Rust names and calls the wire names.
            assert_eq!(calc.total(vec![1, 2, 3, 4]).await.unwrap(), 10);
            assert_eq!(calc.label().await.unwrap(), "first as calc.describe");

            // By wire name: reachable.
            let n: i64 = p.client.call("calc.sum", &(vec![5i64, 6],)).await.unwrap();
            assert_eq!(n, 11);
            let s: String = p.client.call("calc.describe", &()).await.unwrap();
            assert_eq!(s, "first as calc.describe");

            // By Rust name: unknown.
            let e = p
                .client
                .call::<i64, _>("calc.total", &(vec![5i64, 6],))
                .await
                .unwrap_err();
            assert_eq!(e, unknown_method("calc", "total"));
            let e = p
                .client
                .call::<String, _>("calc.label", &())
                .await
                .unwrap_err();
            assert_eq!(e, unknown_method("calc", "label"));

            // Skipped, and the associated fn: never exposed.
            let e = p
                .client
                .call::<u64, _>("calc.reset", &())
                .await
                .unwrap_err();
            assert_eq!(e, unknown_method("calc", "reset"));
            let e = p
                .client
                .call::<(), _>("calc.new", &("x",))
                .await
                .unwrap_err();
            assert_eq!(e, unknown_method("calc", "new"));
            // ... but still an ordinary method locally.
            let local = Calculator::new("local");
            local.store(1);
            assert_eq!(local.reset(), 1);

            // The block's name replaces the type's name.
            let e = p
                .client
                .call::<i64, _>("Calculator.add", &(1i64, 2i64))
                .await
                .unwrap_err();
            assert_eq!(
                e,
                RpcError::Remote(RemoteError::UnknownObject("Calculator".into()))
            );
            let n: i64 = p.client.call("calc.add", &(1i64, 2i64)).await.unwrap();
            assert_eq!(n, 3);
        })
        .await;
    }
}

#[tokio::test]
async fn one_type_exposed_under_two_names_keeps_two_objects() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let p = pair(&addr).await;
            let first = CalculatorClient::new(&p.client);
            let second = CalculatorClient::with_name(&p.client, "calc2");

            assert_eq!(first.label().await.unwrap(), "first as calc.describe");
            assert_eq!(second.label().await.unwrap(), "second as calc2.describe");

            // Separate state behind each name.
            first.store(1).await.unwrap();
            second.store(2).await.unwrap();
            second.store(3).await.unwrap();
            assert_eq!(first.memory().await.unwrap(), vec![1]);
            assert_eq!(second.memory().await.unwrap(), vec![2, 3]);

            // Every method works under the second name, renamed ones included.
            assert_eq!(second.total(vec![7, 8]).await.unwrap(), 15);
            assert_eq!(second.mul(3, 4).await.unwrap(), 12);
            let (object, method, a) = second.ctx_first(9).await.unwrap();
            assert_eq!(
                (object.as_str(), method.as_str(), a),
                ("calc2", "ctx_first", 9)
            );

            // A name nobody exposed.
            let e = CalculatorClient::with_name(&p.client, "calc3")
                .add(1, 1)
                .await
                .unwrap_err();
            assert_eq!(
                e,
                RpcError::Remote(RemoteError::UnknownObject("calc3".into()))
            );
        })
        .await;
    }
}

#[tokio::test]
async fn call_context_is_filled_in_first_middle_and_last_position() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let p = pair(&addr).await;
            let calc = CalculatorClient::new(&p.client);

            let (object, method, a) = calc.ctx_first(17).await.unwrap();
            assert_eq!(
                (object.as_str(), method.as_str(), a),
                ("calc", "ctx_first", 17)
            );

            let (connection, diff) = calc.ctx_middle(10, 4).await.unwrap();
            assert_eq!(diff, 6);
            assert_eq!(connection, p.server_side.connection_id());

            assert_eq!(
                calc.ctx_last("hello".into()).await.unwrap(),
                "hello from tester"
            );

            // The context is not part of the wire arguments: a dynamic call
            // sends only the other ones.
            let (connection, diff): (u64, i64) = p
                .client
                .call("calc.ctx_middle", &(3i64, 5i64))
                .await
                .unwrap();
            assert_eq!((connection, diff), (p.server_side.connection_id(), -2));
        })
        .await;
    }
}

#[tokio::test]
async fn the_stub_constants_list_what_the_peer_serves() {
    let calc_methods = [
        "add",
        "mul",
        "store",
        "forget",
        "memory",
        "checked_add",
        "divide",
        "sum",
        "describe",
        "ctx_first",
        "ctx_middle",
        "ctx_last",
        "note_to_caller",
    ];
    assert_eq!(CalculatorClient::NAME, "calc");
    assert_eq!(CalculatorClient::METHODS, calc_methods);
    assert_eq!(<Calculator as Service>::name(), "calc");
    assert_eq!(<Calculator as Service>::methods(), calc_methods);

    let notebook_methods = ["write", "erase", "lines", "read_line", "caller"];
    assert_eq!(NotebookClient::NAME, "Notebook");
    assert_eq!(NotebookClient::METHODS, notebook_methods);
    assert_eq!(<Notebook as Service>::methods(), notebook_methods);

    for (addr, _dir) in addresses() {
        within(10, async {
            let p = pair(&addr).await;
            // Every listed method is served: arguments that cannot decode
            // as any method's parameters give `BadArguments`, never
            // `UnknownMethod`.
            let garbage = (u64::MAX, u64::MAX, u64::MAX, u64::MAX, u64::MAX);
            for name in ["calc", "calc2"] {
                for method in CalculatorClient::METHODS {
                    let e = p
                        .client
                        .call::<(), _>(&format!("{name}.{method}"), &garbage)
                        .await
                        .unwrap_err();
                    assert!(
                        matches!(e, RpcError::Remote(RemoteError::BadArguments(_))),
                        "{name}.{method}: {e:?}"
                    );
                }
            }
            for method in NotebookClient::METHODS {
                let e = p
                    .server_side
                    .call::<(), _>(&format!("Notebook.{method}"), &garbage)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(e, RpcError::Remote(RemoteError::BadArguments(_))),
                    "Notebook.{method}: {e:?}"
                );
            }
            // Nothing ran.
            assert_eq!(p.notebook.lines(), Vec::<String>::new());
        })
        .await;
    }
}

#[tokio::test]
async fn the_server_calls_the_object_the_client_exposed() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let p = pair(&addr).await;
            assert_eq!(p.server_side.remote_name().as_deref(), Some("tester"));
            let notebook = NotebookClient::new(&p.server_side);

            // Sync with a value, the effect seen on the client side.
            assert_eq!(notebook.write("one".into()).await.unwrap(), 1);
            assert_eq!(notebook.write("two".into()).await.unwrap(), 2);
            assert_eq!(p.notebook.lines(), ["one", "two"]);
            assert_eq!(notebook.lines().await.unwrap(), ["one", "two"]);

            // Renamed async method with a typed error.
            assert_eq!(notebook.line(1).await.unwrap(), Ok("two".to_owned()));
            assert_eq!(
                notebook.line(5).await.unwrap(),
                Err(NoteError::NoSuchLine { index: 5, len: 2 })
            );
            let r: Result<String, NoteError> = p
                .server_side
                .call("Notebook.read_line", &(0u64,))
                .await
                .unwrap();
            assert_eq!(r, Ok("one".to_owned()));
            let e = p
                .server_side
                .call::<Result<String, NoteError>, _>("Notebook.line", &(0u64,))
                .await
                .unwrap_err();
            assert_eq!(e, unknown_method("Notebook", "line"));

            // The context on the client side names the same connection.
            let (connection, object, method) = notebook.caller().await.unwrap();
            assert_eq!(connection, p.client.connection_id());
            assert_eq!(connection, p.server_side.connection_id());
            assert_eq!((object.as_str(), method.as_str()), ("Notebook", "caller"));

            // Skipped on the client side too.
            let e = p
                .server_side
                .call::<(), _>("Notebook.burn", &())
                .await
                .unwrap_err();
            assert_eq!(e, unknown_method("Notebook", "burn"));
            assert_eq!(p.notebook.lines().len(), 2);

            // Async `()`.
            let () = notebook.erase().await.unwrap();
            assert_eq!(p.notebook.lines(), Vec::<String>::new());
        })
        .await;
    }
}

#[tokio::test]
async fn a_handler_calls_the_callers_object_during_the_call() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let p = pair(&addr).await;
            let calc = CalculatorClient::new(&p.client);
            p.notebook.write("kept".into());
            assert_eq!(calc.note_to_caller("a".into()).await.unwrap(), Ok(2));
            let second = CalculatorClient::with_name(&p.client, "calc2");
            assert_eq!(second.note_to_caller("b".into()).await.unwrap(), Ok(3));
            assert_eq!(p.notebook.lines(), ["kept", "a", "b"]);
            p.notebook.burn();
            assert_eq!(p.notebook.lines(), Vec::<String>::new());
        })
        .await;
    }
}

/// Byte vectors in every position a signature can hold them.
pub struct Blobs;

#[expose]
impl Blobs {
    /// Returns the bytes unchanged.
    pub fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    /// Byte vectors between other arguments, fully qualified.
    pub async fn mixed(
        &self,
        tag: String,
        data: ::std::vec::Vec<u8>,
        n: u32,
    ) -> (String, usize, u32) {
        (tag, data.len(), n)
    }

    /// A byte vector inside a typed result.
    pub fn checked(&self, data: Vec<u8>) -> Result<Vec<u8>, String> {
        if data.is_empty() {
            Err("empty".into())
        } else {
            Ok(data)
        }
    }
}

#[tokio::test]
async fn byte_vectors_travel_through_stubs_and_dynamic_calls_alike() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Blobs, &addr).await;
            let client = rpc_transport::connect(server.local_addr()).await.unwrap();
            let blobs = BlobsClient::new(&client);
            let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
            assert_eq!(blobs.echo(data.clone()).await.unwrap(), data);
            assert_eq!(blobs.echo(Vec::new()).await.unwrap(), Vec::<u8>::new());
            assert_eq!(
                blobs.mixed("t".into(), data.clone(), 7).await.unwrap(),
                ("t".to_string(), 70_000, 7)
            );
            assert_eq!(blobs.checked(vec![1]).await.unwrap(), Ok(vec![1]));
            assert_eq!(blobs.checked(vec![]).await.unwrap(), Err("empty".into()));
            // A dynamic call encodes the bytes as serde's plain sequence of
            // u8: the same wire format, so both ways of calling interoperate.
            let back: Vec<u8> = client.call("Blobs.echo", &(data.clone(),)).await.unwrap();
            assert_eq!(back, data);
            let e = client
                .call::<Vec<u8>, _>("Blobs.echo", &(42u64, "not bytes"))
                .await
                .unwrap_err();
            assert!(
                matches!(e, RpcError::Remote(RemoteError::BadArguments(_))),
                "{e:?}"
            );
        })
        .await;
    }
}

/// An argument type with a serde attribute postcard cannot honour.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sparse {
    /// Left out of the encoding when `None`: a self-describing format
    /// would notice, postcard cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// After the field that may be missing.
    pub count: u32,
}

/// Takes a [`Sparse`].
pub struct Sparser;

#[expose]
impl Sparser {
    /// Returns the count.
    pub fn count(&self, s: Sparse) -> u32 {
        s.count
    }
}

/// The error names the likely cause when a serde attribute needs a
/// self-describing format.
#[tokio::test]
async fn a_serde_attribute_postcard_cannot_honour_is_named_in_the_error() {
    within(10, async {
        let server = serve(Sparser, "tcp://127.0.0.1:0").await;
        let client = rpc_transport::connect(server.local_addr()).await.unwrap();
        let stub = SparserClient::new(&client);
        let fine = Sparse {
            note: Some("x".into()),
            count: 3,
        };
        assert_eq!(stub.count(fine).await.unwrap(), 3);
        let sparse = Sparse {
            note: None,
            count: 7,
        };
        let err = stub.count(sparse).await.unwrap_err();
        let RpcError::Remote(RemoteError::BadArguments(msg)) = &err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("skip_serializing_if"), "{msg}");
    })
    .await;
}
