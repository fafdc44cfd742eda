//! The generated code does not depend on what the user's module names:
//! `Result`, `Ok`, `Err`, `Option`, `Some`, `None`, `Box`, `String`, `Vec`,
//! even `str` and `usize`, and the traits and types the expansion uses, are
//! all shadowed here by unrelated items.

#![allow(dead_code, non_camel_case_types, clippy::all)]

#[derive(::serde::Serialize, ::serde::Deserialize)]
pub struct Reply {
    pub text: ::std::string::String,
}

mod shadowed {
    pub struct Result;
    pub struct Option;
    pub struct Box;
    pub struct String;
    pub struct Vec;
    pub struct Arc;
    pub struct Duration;
    pub struct Pin;
    pub struct str;
    pub struct usize;
    pub trait Clone {}
    pub trait Debug {}
    pub trait Send {}
    pub trait Future {}
    pub trait Serialize {}
    pub trait Service {}
    pub fn Ok() {}
    pub fn Err() {}
    pub fn Some() {}
    pub const None: () = ();
    pub mod core {}
    pub mod std {}
    pub mod serde {}
    pub mod rpc_core {}
    pub mod __private {}

    // serde's own derive is not hygienic against a shadowed `str` or
    // `usize`, so the payload type lives outside this module.
    use super::Reply;

    pub struct Echo;

    #[::rpc_core::expose]
    impl Echo {
        pub fn echo(&self, text: ::std::string::String) -> Reply {
            Reply { text }
        }

        pub fn maybe(
            &self,
            n: ::core::option::Option<u32>,
        ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
            match n {
                ::core::option::Option::Some(n) => ::core::result::Result::Ok(vec![0; n as _]),
                ::core::option::Option::None => ::core::result::Result::Err("none".into()),
            }
        }

        pub async fn later(&self, cx: ::rpc_core::CallContext) -> u64 {
            cx.connection_id()
        }

        pub fn nothing(&self) {}

        #[::rpc_core::expose(close)]
        async fn close(&self) {}
    }

    // Locals named like the generated ones do not clash either.
    pub struct Locals;

    #[::rpc_core::expose]
    impl Locals {
        pub fn locals(&self, __call: u8, __method: u8, __args: u8, __ret: u8) -> u8 {
            __call + __method + __args + __ret
        }

        pub async fn locals_async(&self, __context: u8, __error: u8, cx: ::rpc_core::CallContext) -> u8 {
            let _ = cx;
            __context + __error
        }
    }
}

fn main() {
    let _ = shadowed::EchoClient::<::rpc_core::Peer>::new;
    let _ = shadowed::LocalsClient::<::rpc_core::Peer>::new;
}
