//! A server in its own process, for tests that stop or kill it: binds the
//! address given as the first argument (default `tcp://127.0.0.1:0`),
//! prints the bound address on one line, and serves until killed.

use rpc_tests::fixtures::Calc;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:0".into());
    let server = rpc_transport::Server::builder()
        .expose(Calc::default())
        .bind(addr.as_str())
        .await
        .expect("bind");
    println!("{}", server.local_addr());
    std::future::pending::<()>().await;
}
