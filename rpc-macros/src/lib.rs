//! The `#[expose]` attribute of `rpc-core`.
//!
//! Use it through `rpc_core::expose`; this crate is an implementation detail
//! and its generated code only names items of `::rpc_core::__private`.
//!
//! `#[expose]` goes on an inherent `impl` block. Every `pub fn` and
//! `pub async fn` of the block that takes `&self` becomes a remote method;
//! the macro keeps the block as written and adds:
//!
//! - an `impl rpc_core::Service` for the type: the dispatch table that the
//!   runtime calls with the index of the method and the incoming call;
//! - a typed client stub, `<Type>Client`, with one `async fn` per exposed
//!   method returning `Result<Ret, RpcError>`.
//!
//! Options:
//!
//! - on the block: `#[expose(name = "calc")]`, the default object name (the
//!   type's name otherwise);
//! - on a method: `#[expose(name = "wire_name")]` to expose it under another
//!   name, `#[expose(skip)]` to keep a `pub` method local, and
//!   `#[expose(close)]` to mark the hook that runs when the server shuts down;
//! - `#[expose(blocking)]` on a method or the block: synchronous methods run
//!   on tokio's blocking pool;
//! - `#[expose(local)]` on the block: the type need not be `Send + Sync`; the
//!   block implements `LocalService` instead of `Service`, served through
//!   `rpc_core::Local` on one thread.
//!
//! A parameter of type `CallContext` is not sent: the handler receives the
//! context of the call (the caller's peer, the deadline, ...) in its place.
//!
//! The macro works in stages, one module each: `attr` reads the options,
//! `ast` builds the model of the block, `check` reports every problem at
//! once, and `expand` writes the generated items.

use proc_macro::TokenStream;
use quote::ToTokens;

mod ast;
mod attr;
mod check;
mod expand;

/// Exposes the `pub` methods of an inherent `impl` block for remote calls.
///
/// See the crate documentation of `rpc-core` for the full description.
#[proc_macro_attribute]
pub fn expose(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut item = match syn::parse::<syn::Item>(input.clone()) {
        Ok(item) => item,
        Err(error) => {
            let mut out = error.into_compile_error();
            out.extend(proc_macro2::TokenStream::from(input));
            return out.into();
        }
    };

    let mut errors = check::Errors::default();
    let service = ast::Service::from_item(args.into(), &mut item, &mut errors);
    if let Some(service) = &service {
        check::service(service, &mut errors);
    }

    // `item` has had its `#[expose(...)]` helper attributes removed by now, so
    // it can be emitted as is, with or without the generated items.
    match (service, errors.finish()) {
        (Some(service), Ok(())) => expand::expose(&item, &service).into(),
        (_, result) => {
            let mut out = item.into_token_stream();
            if let Err(error) = result {
                out.extend(error.into_compile_error());
            }
            out.into()
        }
    }
}
