//! `#[expose(name = "...")]` on the block and on methods; a raw identifier
//! is exposed without its `r#`.

use rpc_core::{expose, Service};

pub struct Calculator;

#[expose(name = "calc")]
impl Calculator {
    #[expose(name = "do_something")]
    pub fn work(&self, n: u32) -> u32 {
        n
    }

    pub fn r#type(&self) -> String {
        "calculator".to_string()
    }

    #[expose(name = "sum")]
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    // The Rust name of one method may be the wire name of another.
    #[expose(name = "work")]
    pub fn other_work(&self) {}
}

async fn client_calls(c: &CalculatorClient) -> Result<(), rpc_core::RpcError> {
    // The stub keeps the Rust names.
    let _: u32 = c.work(1).await?;
    let _: String = c.r#type().await?;
    let _: i64 = c.add(1, 2).await?;
    c.other_work().await?;
    Ok(())
}

fn main() {
    let _ = client_calls;
    assert_eq!(<Calculator as Service>::name(), "calc");
    assert_eq!(CalculatorClient::NAME, "calc");
    assert_eq!(
        <Calculator as Service>::methods(),
        ["do_something", "type", "sum", "work"]
    );
    assert_eq!(CalculatorClient::METHODS, ["do_something", "type", "sum", "work"]);
}
