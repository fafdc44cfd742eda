//! DNS as a source of endpoints: [`Dns`] turns a name's A and AAAA records,
//! or its SRV records, into `tcp://` addresses for a
//! [`Balanced`](super::Balanced) set.
//!
//! Owns: the resolver (its configuration and its cache), the lookups, and
//! the line between "DNS says there is nothing" (an empty list) and "DNS
//! could not be asked" (an error, on which the balancer keeps its
//! backends).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use futures::future::BoxFuture;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, ResolverBuilder, TokioResolver};
use rpc_core::RpcError;
use tracing::debug;

use super::Discover;
use crate::address::Address;

/// The servers a DNS name gives: the addresses of its A and AAAA records
/// ([`Dns::a`]), or the targets of its SRV records ([`Dns::srv`]), each as
/// a `tcp://ip:port` endpoint of a [`Balanced`](super::Balanced) set.
///
/// # Re-resolution
///
/// The balancer asks for the endpoints when it starts, every refresh
/// interval ([`BalancedBuilder::refresh`](super::BalancedBuilder::refresh),
/// 30 s by default) and whenever a backend's connection is lost; each time
/// is a fresh lookup. The resolver keeps no answer from one time to the
/// next (its cache is off), so a changed record is seen at the next
/// refresh whatever its TTL: the refresh interval, not the TTL, says how
/// often DNS is asked. A caching stub between this process and the
/// authoritative servers (systemd-resolved, a cluster's DNS) may still
/// hold an answer for up to its TTL.
///
/// # Empty answers and failures
///
/// - When DNS positively says there is nothing (NXDOMAIN, or a name with no
///   records of the type asked), the list is empty and the balancer drops
///   every backend: the service is gone.
/// - When DNS cannot be asked or does not give an answer (a timeout, no
///   name server reachable, SERVFAIL, REFUSED, a name that is not a valid
///   DNS name, a system configuration that cannot be read), the lookup
///   fails with [`RpcError::BadAddress`] naming the DNS name, and the
///   balancer keeps the backends it has and asks again later. A list is
///   returned only when every lookup it needs was answered, so a transient
///   failure never drops part of the set.
///
/// # SRV records
///
/// Each SRV record names a target host and a port; the target's A and
/// AAAA records give the addresses. Priority is honoured: only the group
/// of records with the lowest priority value whose targets have addresses
/// is used; a group whose targets have no address falls through to the
/// next (a target of `.` means "no service here" and is skipped). Weights
/// are ignored: every address of the group used is one backend, and the
/// balancer spreads calls over backends by their load.
///
/// # Kubernetes
///
/// A headless Service (`clusterIP: None`) needs nothing more: the cluster
/// DNS gives one A (or AAAA) record per ready pod, and one SRV record per
/// pod for each named port. Use `Dns::a("my-svc.my-ns.svc.cluster.local",
/// port)`, or `Dns::srv("_grpc._tcp.my-svc.my-ns.svc.cluster.local")` for a
/// port named `grpc` (the SRV form also finds the port). Pods that start or
/// stop are seen at the next refresh, and at once when a connection to one
/// is lost. A full name ending with a dot (`my-svc.my-ns.svc.cluster.local.`)
/// skips the search list of the pod's `/etc/resolv.conf` (`ndots:5`).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use rpc_transport::balance::{Balanced, Dns};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// // The pods of a headless Service, on port 7000, re-resolved every 10 s.
/// let set = Balanced::builder(Dns::a("workers.prod.svc.cluster.local", 7000))
///     .refresh(Duration::from_secs(10))
///     .start();
/// set.until_connected(1, Duration::from_secs(5)).await?;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
#[derive(Clone)]
pub struct Dns {
    query: Query,
    /// Name servers to ask; the system's configuration when `None`.
    servers: Option<Vec<SocketAddr>>,
    /// Built at the first lookup (reading the system configuration can
    /// fail, and is not needed when name servers are given).
    resolver: OnceLock<TokioResolver>,
}

/// What a [`Dns`] source looks up.
#[derive(Clone, Debug)]
enum Query {
    /// A and AAAA records of a host, all with one port.
    Host { host: String, port: u16 },
    /// SRV records.
    Srv { name: String },
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Dns");
        match &self.query {
            Query::Host { host, port } => d.field("a", host).field("port", port),
            Query::Srv { name } => d.field("srv", name),
        };
        match &self.servers {
            Some(servers) => d.field("name_servers", servers),
            None => d.field("name_servers", &"system"),
        };
        d.finish()
    }
}

impl Dns {
    /// The addresses of `host`'s A and AAAA records, each with `port`
    /// (`tcp://10.0.0.7:7000`, `tcp://[2001:db8::7]:7000`), looked up with
    /// the system's resolver configuration (`/etc/resolv.conf` on Unix;
    /// see [`name_servers`](Self::name_servers) for others).
    ///
    /// A `host` that is an IP address is that one endpoint, with no lookup.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use rpc_transport::balance::{Balanced, Dns};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let set = Balanced::builder(Dns::a("backend.example", 7000)).start();
    /// # drop(set);
    /// # }
    /// ```
    pub fn a(host: impl Into<String>, port: u16) -> Dns {
        Dns::new(Query::Host {
            host: host.into(),
            port,
        })
    }

    /// The targets of `name`'s SRV records (`_service._proto.domain`, such
    /// as `_rpc._tcp.example.com`), each target's A and AAAA addresses with
    /// the record's port, looked up with the system's resolver
    /// configuration (see [`name_servers`](Self::name_servers) for others).
    ///
    /// Only the lowest priority value whose targets have addresses is
    /// used; weights are ignored (see [`Dns`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use rpc_transport::balance::{Balanced, Dns};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let set = Balanced::builder(Dns::srv("_rpc._tcp.example.com")).start();
    /// # drop(set);
    /// # }
    /// ```
    pub fn srv(name: impl Into<String>) -> Dns {
        Dns::new(Query::Srv { name: name.into() })
    }

    fn new(query: Query) -> Dns {
        Dns {
            query,
            servers: None,
            resolver: OnceLock::new(),
        }
    }

    /// Asks these name servers (over UDP, and TCP for long answers) instead
    /// of the ones the system's configuration names: a cluster's DNS
    /// service, a test server. The hosts file and the system's search
    /// domains are not used then, so give full names.
    ///
    /// With no name server at all, every lookup fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use rpc_transport::balance::{Balanced, Dns};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cluster_dns: SocketAddr = "10.96.0.10:53".parse().unwrap();
    /// let source = Dns::srv("_rpc._tcp.workers.prod.svc.cluster.local.")
    ///     .name_servers([cluster_dns]);
    /// let set = Balanced::builder(source).start();
    /// # drop(set);
    /// # }
    /// ```
    pub fn name_servers(mut self, servers: impl IntoIterator<Item = SocketAddr>) -> Dns {
        self.servers = Some(servers.into_iter().collect());
        self.resolver = OnceLock::new();
        self
    }

    /// The name looked up, for messages.
    fn name(&self) -> &str {
        match &self.query {
            Query::Host { host, .. } => host,
            Query::Srv { name } => name,
        }
    }

    /// The resolver, built on first use.
    fn resolver(&self) -> Result<&TokioResolver, RpcError> {
        if let Some(resolver) = self.resolver.get() {
            return Ok(resolver);
        }
        let mut builder = match &self.servers {
            Some(servers) => {
                let mut config = ResolverConfig::new();
                for &addr in servers {
                    config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                    config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
                }
                let mut builder =
                    TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
                builder.options_mut().use_hosts_file = ResolveHosts::Never;
                builder
            }
            None => system_resolver().map_err(|e| {
                RpcError::BadAddress(format!(
                    "DNS name `{}`: cannot read the system's resolver configuration: {e}",
                    self.name()
                ))
            })?,
        };
        // No cache: each refresh is a fresh lookup (see "Re-resolution").
        // A size of 0 stores nothing; the TTL bounds make doubly sure that
        // nothing stored is ever served later.
        let options = builder.options_mut();
        options.cache_size = 0;
        options.positive_max_ttl = Some(Duration::ZERO);
        options.negative_max_ttl = Some(Duration::ZERO);
        // A race builds two; one is kept.
        Ok(self.resolver.get_or_init(|| builder.build()))
    }
}

#[cfg(any(unix, windows))]
fn system_resolver() -> Result<ResolverBuilder<TokioConnectionProvider>, ResolveError> {
    TokioResolver::builder_tokio()
}

#[cfg(not(any(unix, windows)))]
fn system_resolver() -> Result<ResolverBuilder<TokioConnectionProvider>, ResolveError> {
    Err(ResolveError::from(
        "no system resolver configuration on this platform; use Dns::name_servers",
    ))
}

impl Discover for Dns {
    fn endpoints(&self) -> BoxFuture<'_, Result<Vec<Address>, RpcError>> {
        Box::pin(async move {
            let resolver = self.resolver()?;
            let found = match &self.query {
                Query::Host { host, port } => {
                    let ips = match host.parse::<IpAddr>() {
                        Ok(ip) => vec![ip],
                        Err(_) => addresses_of(resolver, host.as_str())
                            .await
                            .map_err(|e| failed(host, "A/AAAA", &e))?,
                    };
                    ips.into_iter()
                        .map(|ip| SocketAddr::new(ip, *port))
                        .collect::<BTreeSet<_>>()
                }
                Query::Srv { name } => srv_endpoints(resolver, name).await?,
            };
            debug!(
                dns.name = self.name(),
                endpoints = found.len(),
                "DNS answered"
            );
            Ok(found
                .into_iter()
                .map(|addr| Address::Tcp(addr.to_string()))
                .collect())
        })
    }
}

/// The error for a lookup that got no answer.
fn failed(name: &str, kind: &str, e: &ResolveError) -> RpcError {
    RpcError::BadAddress(format!("DNS lookup of `{name}` ({kind}) failed: {e}"))
}

/// Whether a failed lookup is DNS saying that there are no such records
/// (NXDOMAIN, or NOERROR with no answer), rather than no answer at all.
fn says_none(e: &ResolveError) -> bool {
    matches!(
        e.proto().map(|p| p.kind()),
        Some(ProtoErrorKind::NoRecordsFound {
            response_code: ResponseCode::NXDomain | ResponseCode::NoError,
            ..
        })
    )
}

/// `Ok(None)` when DNS says there are no such records.
fn answered<T>(result: Result<T, ResolveError>) -> Result<Option<T>, ResolveError> {
    match result {
        Ok(found) => Ok(Some(found)),
        Err(e) if says_none(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The addresses of a host's A and AAAA records, asked for together; an
/// error unless both were answered.
async fn addresses_of(
    resolver: &TokioResolver,
    host: impl hickory_resolver::IntoName + Clone,
) -> Result<Vec<IpAddr>, ResolveError> {
    let (v4, v6) = futures::join!(
        resolver.ipv4_lookup(host.clone()),
        resolver.ipv6_lookup(host)
    );
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Some(v4) = answered(v4)? {
        ips.extend(v4.iter().map(|a| IpAddr::V4(a.0)));
    }
    if let Some(v6) = answered(v6)? {
        ips.extend(v6.iter().map(|a| IpAddr::V6(a.0)));
    }
    Ok(ips)
}

/// The endpoints of the lowest-priority group of SRV records whose
/// targets have addresses.
async fn srv_endpoints(
    resolver: &TokioResolver,
    name: &str,
) -> Result<BTreeSet<SocketAddr>, RpcError> {
    let records: Vec<SRV> = match answered(resolver.srv_lookup(name).await) {
        Ok(Some(lookup)) => lookup.iter().cloned().collect(),
        Ok(None) => return Ok(BTreeSet::new()),
        Err(e) => return Err(failed(name, "SRV", &e)),
    };
    let priorities: BTreeSet<u16> = records.iter().map(SRV::priority).collect();
    for priority in priorities {
        let group = records
            .iter()
            .filter(|r| r.priority() == priority && !r.target().is_root());
        let resolved = futures::future::join_all(group.map(|r| async move {
            let ips = addresses_of(resolver, r.target().clone()).await;
            (r, ips)
        }))
        .await;
        let mut found = BTreeSet::new();
        for (record, ips) in resolved {
            let target = record.target().to_string();
            let ips = ips.map_err(|e| failed(&target, &format!("A/AAAA for SRV {name}"), &e))?;
            found.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, record.port())));
        }
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Ok(BTreeSet::new())
}

#[cfg(test)]
mod tests {
    use hickory_resolver::proto::op::Query as DnsQuery;
    use hickory_resolver::proto::ProtoError;

    use super::*;

    fn no_records(code: ResponseCode) -> ResolveError {
        ProtoError::nx_error(
            Box::new(DnsQuery::new()),
            None,
            None,
            None,
            code,
            true,
            None,
        )
        .into()
    }

    #[test]
    fn only_nxdomain_and_an_empty_noerror_say_there_is_nothing() {
        assert!(says_none(&no_records(ResponseCode::NXDomain)));
        assert!(says_none(&no_records(ResponseCode::NoError)));
        assert!(!says_none(&no_records(ResponseCode::ServFail)));
        assert!(!says_none(&no_records(ResponseCode::Refused)));
        assert!(!says_none(&ResolveError::from("no connections available")));
    }

    #[tokio::test]
    async fn an_ip_address_is_its_own_endpoint() {
        // No name server: any lookup would fail.
        for (host, port, expected) in [
            ("127.0.0.1", 80, "tcp://127.0.0.1:80"),
            ("::1", 7000, "tcp://[::1]:7000"),
        ] {
            let source = Dns::a(host, port).name_servers([]);
            let found = source.endpoints().await.unwrap();
            assert_eq!(found, vec![expected.parse::<Address>().unwrap()]);
        }
    }

    #[tokio::test]
    async fn a_lookup_with_no_name_server_is_an_error_naming_the_name() {
        let source = Dns::srv("_rpc._tcp.example.com").name_servers([]);
        match source.endpoints().await {
            Err(RpcError::BadAddress(message)) => {
                assert!(message.contains("_rpc._tcp.example.com"), "{message}");
            }
            other => panic!("expected BadAddress, got {other:?}"),
        }
    }

    #[test]
    fn debug_names_the_query() {
        let source = Dns::a("backend.example", 7000);
        let shown = format!("{source:?}");
        assert!(
            shown.contains("backend.example") && shown.contains("system"),
            "{shown}"
        );
    }
}
