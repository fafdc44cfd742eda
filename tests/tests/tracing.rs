//! Every call is traced: one `rpc.call` span on the caller's side and one
//! `rpc.serve` span on the callee's, with the OpenTelemetry-style fields
//! `otel.kind`, `rpc.service`, `rpc.method` and `rpc.request_id`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rpc_tests::fixtures::{Calc, CalcClient};
use rpc_tests::serve;
use rpc_tests::within;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One span as recorded: its name and its fields, as text.
type Seen = (String, BTreeMap<String, String>);

/// A layer that keeps every span with its fields.
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<BTreeMap<u64, Seen>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let name = attrs.metadata().name().to_string();
        self.spans
            .lock()
            .unwrap()
            .insert(id.into_u64(), (name, fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some((_, fields)) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

#[tokio::test]
async fn each_call_has_a_client_span_and_a_server_span_with_otel_fields() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    within(10, async {
        let server = serve(Calc::default(), "tcp://127.0.0.1:0").await;
        let client = rpc_transport::connect(server.local_addr()).await.unwrap();
        assert_eq!(CalcClient::new(&client).add(2, 3).await.unwrap(), 5);
    })
    .await;

    let spans: Vec<Seen> = recorder.spans.lock().unwrap().values().cloned().collect();
    let find = |name: &str| {
        spans
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no `{name}` span among {spans:?}"))
    };
    let call = find("rpc.call");
    assert_eq!(call["otel.kind"], "client");
    assert_eq!(call["rpc.service"], "Calc");
    assert_eq!(call["rpc.method"], "add");
    assert_eq!(call["rpc.request_id"], "1");
    let serve = find("rpc.serve");
    assert_eq!(serve["otel.kind"], "server");
    assert_eq!(serve["rpc.service"], "Calc");
    assert_eq!(serve["rpc.method"], "add");
    assert_eq!(serve["rpc.request_id"], "1");
}
