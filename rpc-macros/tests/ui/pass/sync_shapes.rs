//! Synchronous methods: zero, one and many arguments; no return, `()`, a
//! value, a `Result` with a custom error; `mut` and `_` parameters; the
//! `self: &Self` spelling of the receiver.

use rpc_core::{expose, Service};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub enum MathError {
    DivideByZero,
    Overflow { a: i64, b: i64 },
}

pub struct Calculator;

#[expose]
impl Calculator {
    pub fn ping(&self) {}

    pub fn reset(&self) -> () {}

    pub fn answer(&self) -> u64 {
        42
    }

    pub fn negate(&self, x: i64) -> i64 {
        -x
    }

    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    pub fn mul3(&self, a: i64, b: i64, c: i64) -> Result<i64, MathError> {
        a.checked_mul(b)
            .and_then(|ab| ab.checked_mul(c))
            .ok_or(MathError::Overflow { a, b })
    }

    pub fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            Err(MathError::DivideByZero)
        } else {
            Ok(a / b)
        }
    }

    pub fn count_up(&self, mut n: u32) -> u32 {
        n += 1;
        n
    }

    pub fn ignore(&self, _: u32, kept: String) -> String {
        kept
    }

    pub fn typed_receiver(self: &Self, s: String) -> usize {
        s.len()
    }
}

async fn client_calls(c: &CalculatorClient) -> Result<(), rpc_core::RpcError> {
    let () = c.ping().await?;
    let () = c.reset().await?;
    let _: u64 = c.answer().await?;
    let _: i64 = c.negate(1).await?;
    let _: i64 = c.add(1, 2).await?;
    let _: Result<i64, MathError> = c.mul3(1, 2, 3).await?;
    let _: Result<i64, MathError> = c.div(1, 0).await?;
    let _: u32 = c.count_up(1).await?;
    let _: String = c.ignore(1, String::new()).await?;
    let _: usize = c.typed_receiver(String::new()).await?;
    Ok(())
}

fn main() {
    let _ = client_calls;
    assert_eq!(<Calculator as Service>::name(), "Calculator");
    assert_eq!(CalculatorClient::NAME, "Calculator");
    let expected = [
        "ping", "reset", "answer", "negate", "add", "mul3", "div", "count_up", "ignore",
        "typed_receiver",
    ];
    assert_eq!(<Calculator as Service>::methods(), expected);
    assert_eq!(CalculatorClient::METHODS, expected);
}
