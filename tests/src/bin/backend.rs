//! A backend in a process of its own, for the balancing tests: serves
//! `Backend` under the name given on the command line, on the address given
//! (default `tcp://127.0.0.1:0`), prints its address on the first line of
//! stdout, and exits when its stdin closes (or when it is killed).
//!
//! `backend <name> [address]`

use std::io::Read;

use rpc_tests::backend::Backend;
use rpc_transport::Server;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "backend".into());
    let addr = args.next().unwrap_or_else(|| "tcp://127.0.0.1:0".into());
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let server = Server::builder()
            .expose(Backend { name })
            .bind(addr.as_str())
            .await
            .expect("binds");
        println!("{}", server.local_addr());
        futures::future::pending::<()>().await;
    });
}
