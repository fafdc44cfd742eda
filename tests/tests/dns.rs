//! DNS discovery against a real authoritative DNS server started in the
//! test process (hickory-server on 127.0.0.1, UDP and TCP) whose records
//! the tests change while they run: SRV and A/AAAA records turned into
//! endpoints, a `Balanced` set following record changes, SRV priorities,
//! names that do not exist (an empty list) and a server that fails (an
//! error, and the backends kept).

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use rpc_core::{expose, RpcError};
use rpc_tests::{init_tracing, within};
use rpc_transport::balance::{Balanced, Discover, Dns};
use rpc_transport::{Address, Server};
use tokio::net::{TcpListener, UdpSocket};

/// Says which server answered.
pub struct Which(u32);

#[expose]
impl Which {
    /// The server's number.
    #[expose(idempotent)]
    pub fn which(&self) -> u32 {
        self.0
    }
}

/// The records the test DNS server answers with, changed by the tests
/// while it runs.
#[derive(Clone, Default)]
struct Zone {
    inner: Arc<ZoneInner>,
}

#[derive(Default)]
struct ZoneInner {
    records: Mutex<HashMap<(Name, RecordType), Vec<RData>>>,
    /// Answer SERVFAIL to everything.
    failing: AtomicBool,
    /// Queries answered so far.
    queries: AtomicUsize,
}

impl Zone {
    /// Replaces the records of `name` of the type of `rdatas` (none: removes them).
    fn set(&self, name: &str, rtype: RecordType, rdatas: Vec<RData>) {
        let name = Name::from_ascii(name).unwrap();
        let mut records = self.inner.records.lock().unwrap();
        if rdatas.is_empty() {
            records.remove(&(name, rtype));
        } else {
            records.insert((name, rtype), rdatas);
        }
    }

    fn fail(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    fn queries(&self) -> usize {
        self.inner.queries.load(Ordering::SeqCst)
    }

    /// The records of `name` and `rtype`, and the response code: NXDOMAIN
    /// when the name has no records of any type.
    fn answer(&self, name: &Name, rtype: RecordType) -> (Vec<Record>, ResponseCode) {
        let records = self.inner.records.lock().unwrap();
        let found: Vec<Record> = records
            .get(&(name.clone(), rtype))
            .into_iter()
            .flatten()
            .map(|rdata| Record::from_rdata(name.clone(), 1, rdata.clone()))
            .collect();
        let exists = records.keys().any(|(n, _)| n == name);
        let code = if exists {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        (found, code)
    }
}

/// Serves a [`Zone`] as its authority.
struct Authority(Zone);

#[async_trait::async_trait]
impl RequestHandler for Authority {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let zone = &self.0.inner;
        zone.queries.fetch_add(1, Ordering::SeqCst);
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(true);
        let builder = MessageResponseBuilder::from_message_request(request);
        let query = match request.request_info() {
            Ok(info) => info.query.clone(),
            Err(_) => {
                header.set_response_code(ResponseCode::FormErr);
                return send(&mut response, builder.build_no_records(header), header).await;
            }
        };
        if zone.failing.load(Ordering::SeqCst) {
            header.set_response_code(ResponseCode::ServFail);
            return send(&mut response, builder.build_no_records(header), header).await;
        }
        let name = Name::from(query.name());
        let (answers, code) = self.0.answer(&name, query.query_type());
        header.set_response_code(code);
        // A negative answer carries the zone's SOA, as a real server's does.
        let soa = if answers.is_empty() {
            vec![soa()]
        } else {
            Vec::new()
        };
        let message = builder.build(
            header,
            answers.iter(),
            std::iter::empty(),
            soa.iter(),
            std::iter::empty(),
        );
        send(&mut response, message, header).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    header: Header,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(_) => header.into(),
    }
}

fn soa() -> Record {
    let zone = Name::from_ascii("test.").unwrap();
    let soa = SOA::new(
        Name::from_ascii("ns.test.").unwrap(),
        Name::from_ascii("admin.test.").unwrap(),
        1,
        60,
        60,
        60,
        1,
    );
    Record::from_rdata(zone, 1, RData::SOA(soa))
}

/// A test DNS server: the zone it answers from, and where it listens.
struct DnsServer {
    zone: Zone,
    addr: SocketAddr,
    _server: ServerFuture<Authority>,
}

/// Starts a DNS server on 127.0.0.1, UDP and TCP on one port.
async fn dns_server() -> DnsServer {
    let zone = Zone::default();
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        // The same port over TCP, for answers too long for UDP; another
        // program may hold it, then try another port.
        let Ok(tcp) = TcpListener::bind(addr).await else {
            continue;
        };
        let mut server = ServerFuture::new(Authority(zone.clone()));
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5));
        return DnsServer {
            zone,
            addr,
            _server: server,
        };
    }
    panic!("no free port for the DNS server over both UDP and TCP");
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

fn aaaa(ip: Ipv6Addr) -> RData {
    RData::AAAA(AAAA(ip))
}

fn srv(priority: u16, port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(
        priority,
        10,
        port,
        Name::from_ascii(target).unwrap(),
    ))
}

/// The host name of the rpc servers, whose A record is 127.0.0.1.
const HOST: &str = "backend.svc.test.";

/// Three rpc servers on 127.0.0.1, answering 1, 2 and 3, and the A record
/// of [`HOST`].
async fn backends(zone: &Zone) -> Vec<(Server, u16)> {
    zone.set(HOST, RecordType::A, vec![a([127, 0, 0, 1])]);
    let mut servers = Vec::new();
    for n in 1..=3 {
        let server = Server::builder()
            .expose(Which(n))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let port = port_of(server.local_addr());
        servers.push((server, port));
    }
    servers
}

fn port_of(addr: &Address) -> u16 {
    match addr {
        Address::Tcp(hp) => hp.rsplit_once(':').unwrap().1.parse().unwrap(),
        other => panic!("not a TCP address: {other}"),
    }
}

fn endpoint(port: u16) -> Address {
    Address::Tcp(format!("127.0.0.1:{port}"))
}

const SERVICE: &str = "_rpc._tcp.svc.test.";

/// Sets the SRV records of [`SERVICE`]: [`HOST`] at each port, all of
/// priority 0.
fn srv_records(zone: &Zone, ports: &[u16]) {
    let records = ports.iter().map(|&port| srv(0, port, HOST)).collect();
    zone.set(SERVICE, RecordType::SRV, records);
}

/// How many of `calls` calls each server answered.
async fn spread(set: &Balanced, calls: usize) -> HashMap<u32, usize> {
    let client = WhichClient::new(set);
    let mut counts = HashMap::new();
    for _ in 0..calls {
        *counts.entry(client.which().await.unwrap()).or_default() += 1;
    }
    counts
}

/// Waits until `f` holds, checking every 20 ms (bounded by the caller's
/// `within`).
async fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn set_of(addrs: Vec<Address>) -> BTreeSet<String> {
    addrs.iter().map(Address::to_string).collect()
}

#[tokio::test]
async fn srv_records_drive_the_balanced_set() {
    init_tracing();
    within(60, async {
        let dns = dns_server().await;
        let servers = backends(&dns.zone).await;
        let ports: Vec<u16> = servers.iter().map(|(_, port)| *port).collect();
        srv_records(&dns.zone, &ports[..2]);

        let set = Balanced::builder(Dns::srv(SERVICE).name_servers([dns.addr]))
            .refresh(Duration::from_millis(100))
            .start();
        set.until_connected(2, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            set_of(set.backends()),
            set_of(vec![endpoint(ports[0]), endpoint(ports[1])])
        );

        // Calls spread over both.
        let counts = spread(&set, 200).await;
        assert_eq!(counts.values().sum::<usize>(), 200);
        for n in [1, 2] {
            let got = counts.get(&n).copied().unwrap_or(0);
            assert!(got >= 40, "server {n} answered {got} of 200: {counts:?}");
        }

        // A third record: the set grows, and calls reach the new server.
        srv_records(&dns.zone, &ports);
        until(|| set.backends().len() == 3).await;
        let client = WhichClient::new(&set);
        let mut reached = false;
        for _ in 0..300 {
            if client.which().await.unwrap() == 3 {
                reached = true;
                break;
            }
        }
        assert!(reached, "no call reached the server added to DNS");

        // One record removed: the set shrinks, and no call goes there.
        srv_records(&dns.zone, &ports[1..]);
        until(|| set.backends().len() == 2).await;
        assert_eq!(
            set_of(set.backends()),
            set_of(vec![endpoint(ports[1]), endpoint(ports[2])])
        );
        let counts = spread(&set, 100).await;
        assert_eq!(counts.get(&1), None, "{counts:?}");
        assert_eq!(counts.values().sum::<usize>(), 100);
    })
    .await;
}

#[tokio::test]
async fn a_and_aaaa_records_become_endpoints_and_changes_are_seen() {
    init_tracing();
    within(30, async {
        let dns = dns_server().await;
        dns.zone.set(
            "svc.test.",
            RecordType::A,
            vec![a([127, 0, 0, 1]), a([127, 0, 0, 2])],
        );
        dns.zone.set(
            "svc.test.",
            RecordType::AAAA,
            vec![aaaa(Ipv6Addr::LOCALHOST)],
        );
        let source = Dns::a("svc.test", 7000).name_servers([dns.addr]);

        let found = set_of(source.endpoints().await.unwrap());
        let expected: BTreeSet<String> = [
            "tcp://127.0.0.1:7000",
            "tcp://127.0.0.2:7000",
            "tcp://[::1]:7000",
        ]
        .map(String::from)
        .into();
        assert_eq!(found, expected);
        // Every one parses back as the same address.
        for addr in &found {
            assert_eq!(&addr.parse::<Address>().unwrap().to_string(), addr);
        }

        // A changed record (TTL 1 s) is seen by the very next lookup.
        dns.zone
            .set("svc.test.", RecordType::A, vec![a([127, 0, 0, 3])]);
        dns.zone.set("svc.test.", RecordType::AAAA, vec![]);
        let found = set_of(source.endpoints().await.unwrap());
        assert_eq!(found, ["tcp://127.0.0.3:7000".to_string()].into());

        // An IPv6-only name.
        dns.zone.set(
            "v6.svc.test.",
            RecordType::AAAA,
            vec![aaaa("2001:db8::7".parse().unwrap())],
        );
        let v6 = Dns::a("v6.svc.test", 80).name_servers([dns.addr]);
        assert_eq!(
            set_of(v6.endpoints().await.unwrap()),
            ["tcp://[2001:db8::7]:80".to_string()].into()
        );

        // An IP address is its own endpoint, with no lookup.
        let before = dns.zone.queries();
        let literal = Dns::a("127.0.0.9", 81).name_servers([dns.addr]);
        assert_eq!(
            literal.endpoints().await.unwrap(),
            vec![Address::Tcp("127.0.0.9:81".into())]
        );
        assert_eq!(dns.zone.queries(), before);
    })
    .await;
}

#[tokio::test]
async fn srv_uses_the_lowest_priority_that_resolves() {
    init_tracing();
    within(30, async {
        let dns = dns_server().await;
        let zone = &dns.zone;
        zone.set("one.svc.test.", RecordType::A, vec![a([127, 0, 0, 1])]);
        zone.set("two.svc.test.", RecordType::A, vec![a([127, 0, 0, 2])]);
        zone.set(
            "spare.svc.test.",
            RecordType::AAAA,
            vec![aaaa(Ipv6Addr::LOCALHOST)],
        );
        zone.set(
            SERVICE,
            RecordType::SRV,
            vec![
                srv(20, 9000, "spare.svc.test."),
                srv(10, 7001, "one.svc.test."),
                srv(10, 7002, "two.svc.test."),
            ],
        );
        let source = Dns::srv(SERVICE).name_servers([dns.addr]);
        assert_eq!(
            set_of(source.endpoints().await.unwrap()),
            ["tcp://127.0.0.1:7001", "tcp://127.0.0.2:7002"]
                .map(String::from)
                .into()
        );

        // One target of the first group gone: the other one is used.
        zone.set("one.svc.test.", RecordType::A, vec![]);
        assert_eq!(
            set_of(source.endpoints().await.unwrap()),
            ["tcp://127.0.0.2:7002".to_string()].into()
        );

        // No target of the first group has an address: the next group.
        zone.set("two.svc.test.", RecordType::A, vec![]);
        assert_eq!(
            set_of(source.endpoints().await.unwrap()),
            ["tcp://[::1]:9000".to_string()].into()
        );

        // A target of "." means no service there.
        zone.set(SERVICE, RecordType::SRV, vec![srv(0, 7003, ".")]);
        assert_eq!(source.endpoints().await.unwrap(), Vec::<Address>::new());
    })
    .await;
}

#[tokio::test]
async fn a_name_that_does_not_exist_is_an_empty_list() {
    init_tracing();
    within(30, async {
        let dns = dns_server().await;
        // Some other name exists; these do not.
        dns.zone
            .set("svc.test.", RecordType::A, vec![a([127, 0, 0, 1])]);
        let a = Dns::a("nobody.test", 7000).name_servers([dns.addr]);
        assert_eq!(a.endpoints().await.unwrap(), Vec::<Address>::new());
        let srv_source = Dns::srv("_rpc._tcp.nobody.test").name_servers([dns.addr]);
        assert_eq!(srv_source.endpoints().await.unwrap(), Vec::<Address>::new());
        // A name with records of another type only (NOERROR, no answer).
        let no_srv = Dns::srv("svc.test").name_servers([dns.addr]);
        assert_eq!(no_srv.endpoints().await.unwrap(), Vec::<Address>::new());
        // The server was asked each time.
        assert!(dns.zone.queries() >= 3);
    })
    .await;
}

#[tokio::test]
async fn a_failing_dns_keeps_the_backends_and_an_empty_answer_drops_them() {
    init_tracing();
    within(60, async {
        let dns = dns_server().await;
        let servers = backends(&dns.zone).await;
        let ports: Vec<u16> = servers.iter().map(|(_, port)| *port).collect();
        srv_records(&dns.zone, &ports[..2]);
        let source = Dns::srv(SERVICE).name_servers([dns.addr]);
        let set = Balanced::builder(source.clone())
            .refresh(Duration::from_millis(100))
            .start();
        set.until_connected(2, Duration::from_secs(10))
            .await
            .unwrap();

        // SERVFAIL: the lookup is an error naming the DNS name...
        dns.zone.fail(true);
        match source.endpoints().await {
            Err(RpcError::BadAddress(message)) => {
                assert!(message.contains(SERVICE), "{message}")
            }
            other => panic!("expected BadAddress, got {other:?}"),
        }
        // ...and the set keeps its backends over several refreshes.
        let asked = dns.zone.queries();
        until(|| dns.zone.queries() >= asked + 5).await;
        assert_eq!(set.backends().len(), 2);
        let counts = spread(&set, 20).await;
        assert_eq!(counts.values().sum::<usize>(), 20);

        // DNS answers again, saying the name no longer exists: the set
        // drops every backend.
        dns.zone.set(SERVICE, RecordType::SRV, vec![]);
        dns.zone.fail(false);
        until(|| set.backends().is_empty()).await;
    })
    .await;
}

#[tokio::test]
async fn no_name_server_reachable_is_an_error() {
    init_tracing();
    within(60, async {
        // A UDP port nobody answers on, and no TCP listener there.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let source = Dns::a("svc.test", 7000).name_servers([addr]);
        match source.endpoints().await {
            Err(RpcError::BadAddress(message)) => {
                assert!(message.contains("svc.test"), "{message}")
            }
            other => panic!("expected BadAddress, got {other:?}"),
        }
        // With no name server at all, too.
        let none = Dns::a("svc.test", 7000).name_servers(Vec::<SocketAddr>::new());
        assert!(matches!(
            none.endpoints().await,
            Err(RpcError::BadAddress(_))
        ));
    })
    .await;
}
