//! The caller side: `<Type>Client`, a typed stub with one `async fn` per
//! exposed method.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt;

use super::{arg_name, concrete, is_byte_vec, return_type, spanned_tuple};
use crate::ast::{Method, Service};

/// The stub's name: the type's name followed by `Client`.
fn client_ident(service: &Service) -> Ident {
    let ident = service.ident.unraw();
    format_ident!("{}Client", ident, span = ident.span())
}

/// The blocking stub's name: the type's name followed by `BlockingClient`.
fn blocking_ident(service: &Service) -> Ident {
    let ident = service.ident.unraw();
    format_ident!("{}BlockingClient", ident, span = ident.span())
}

/// `pub struct TypeClient { ... }`.
pub(super) fn client_struct(service: &Service) -> TokenStream {
    let cfgs = &service.cfgs;
    let client = client_ident(service);
    let doc = format!(
        " A typed client for a remote `{}` object, exposed as `\"{}\"` by default.",
        service.ident.unraw(),
        service.object_name(),
    );
    let doc_more = " Each method calls the exposed method of the same Rust name on the \
                    peer and returns its result, or an `RpcError` when the call does not \
                    complete. The stub is cheap to clone.";
    let blocking = blocking_ident(service);
    let blocking_doc = format!(
        " A blocking client for a remote `{}` object, for code with no async: the \
         methods of `{client}` minus `async` (those returning streams are left out). \
         Made by `{client}::blocking`.",
        service.ident.unraw(),
    );
    quote! {
        #(#cfgs)*
        #[doc = #doc]
        #[doc = ""]
        #[doc = #doc_more]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        pub struct #client<C = ::rpc_core::__private::Peer> {
            __caller: C,
            __targets: ::std::sync::Arc<[::std::boxed::Box<::core::primitive::str>]>,
            __timeout: ::core::option::Option<::core::time::Duration>,
        }

        #(#cfgs)*
        #[doc = #blocking_doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        pub struct #blocking<C = ::rpc_core::__private::Peer> {
            __inner: #client<C>,
            __runtime: ::rpc_core::__private::RuntimeHandle,
        }
    }
}

/// `impl TypeClient { ... }`: constants, constructors and one method per
/// exposed method.
pub(super) fn client_impl(service: &Service) -> TokenStream {
    let cfgs = &service.cfgs;
    let self_ty = &service.self_ty;
    let client = client_ident(service);
    let name = service.object_name();
    let wire_names = service.exposed().map(|m| m.wire_name().0);
    let methods = service
        .exposed()
        .enumerate()
        .map(|(index, method)| stub_method(index, method, service));
    let name_doc = format!(" The name the object is exposed under by default: `\"{name}\"`.");
    let blocking = blocking_ident(service);
    let blocking_methods = service
        .exposed()
        .filter(|method| method.stream_output().is_none())
        .map(|method| blocking_method(method, service));

    quote! {
        #(#cfgs)*
        impl #client {
            #[doc = #name_doc]
            pub const NAME: &'static ::core::primitive::str = #name;

            /// The wire names of the exposed methods (what the remote
            /// object answers to), in declaration order.
            pub const METHODS: &'static [&'static ::core::primitive::str] = &[#(#wire_names),*];

            /// The peer the calls go to.
            pub fn peer(&self) -> &::rpc_core::__private::Peer {
                &self.__caller
            }
        }

        #(#cfgs)*
        impl<C: ::rpc_core::__private::Caller> #client<C> {
            /// A stub for the object exposed under its default name
            /// ([`NAME`](Self::NAME)) on the other end of `caller`: a
            /// `Peer`, or anything else that carries calls (a balanced set
            /// of peers).
            pub fn new(caller: &C) -> Self {
                Self::with_name(caller, #client::NAME)
            }

            /// A stub for the object exposed under `name` on the other end
            /// of `caller`.
            pub fn with_name(caller: &C, name: &::core::primitive::str) -> Self {
                Self {
                    __caller: ::core::clone::Clone::clone(caller),
                    __targets: ::rpc_core::__private::targets(name, #client::METHODS),
                    __timeout: ::core::option::Option::None,
                }
            }

            /// Gives every call made through this stub a timeout; the
            /// remote handler sees the deadline too.
            #[must_use]
            pub fn with_timeout(mut self, timeout: ::core::time::Duration) -> Self {
                self.__timeout = ::core::option::Option::Some(timeout);
                self
            }

            /// A blocking stub over this one, for code with no async: its
            /// calls run on `runtime` (the one that drives the peer's
            /// connection, such as `rpc_transport::blocking::Client::runtime`)
            /// and block until they are answered.
            pub fn blocking(self, runtime: &::rpc_core::__private::RuntimeHandle) -> #blocking<C> {
                #blocking {
                    __inner: self,
                    __runtime: ::core::clone::Clone::clone(runtime),
                }
            }

            #(#methods)*
        }

        #(#cfgs)*
        #[automatically_derived]
        impl ::rpc_core::__private::Exposed for #self_ty {
            type Client = #client;

            fn client(
                peer: &::rpc_core::__private::Peer,
                name: &::core::primitive::str,
            ) -> #client {
                #client::with_name(peer, name)
            }

            fn method_names() -> &'static [&'static ::core::primitive::str] {
                #client::METHODS
            }
        }

        #(#cfgs)*
        impl<C: ::rpc_core::__private::Caller> #blocking<C> {
            #(#blocking_methods)*
        }
    }
}

/// One `pub async fn` of the stub.
fn stub_method(index: usize, method: &Method, service: &Service) -> TokenStream {
    let index = Literal::usize_unsuffixed(index);
    let ident = method.ident();
    let docs = &method.docs;
    let (wire, _) = method.wire_name();
    let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
    let calls = format!(
        " Calls `{wire}` on the remote object; fails with an `RpcError` when the call \
         does not complete."
    );

    let mut params = Vec::new();
    let mut values = Vec::new();
    let mut types = Vec::new();
    let mut input = None;
    for (i, arg) in method.args.iter().enumerate() {
        if arg.context {
            continue;
        }
        let name = arg_name(arg, i);
        if let Some(item) = &arg.stream {
            params.push(input_param(&name, item, service));
            input = Some(name);
            continue;
        }
        let ty = concrete(&arg.ty, &service.self_ty);
        params.push(quote!(#name: #ty));
        if is_byte_vec(&arg.ty) {
            values.push(quote!(::rpc_core::__private::AsBytes(&#name)));
            types.push(quote!(::rpc_core::__private::AsBytes<'_>));
        } else {
            values.push(quote!(&#name));
            types.push(quote!(&#ty));
        }
    }
    let ret = return_type(method, &service.self_ty);
    let bytes_ret = method.output().is_some_and(is_byte_vec);
    let (decoded, unwrap) = if bytes_ret {
        (
            quote!(::rpc_core::__private::ByteBuf),
            quote!(.map(::rpc_core::__private::ByteBuf::into_inner)),
        )
    } else {
        (ret.clone(), TokenStream::new())
    };
    // Both type arguments of `call` are written out with the user's spans
    // (the tuple of arguments takes the span of the parameter list), so that
    // a type that cannot cross the wire is reported in the user's signature.
    // Only the bounds of the returned future, checked at `.await`, are still
    // reported at the attribute; `type_checks` points at the exact type.
    let args_ty = spanned_tuple(quote!(#(#types,)*), method.params_span());
    let stream_item = method
        .stream_output()
        .map(|item| concrete(item, &service.self_ty));
    // The `__private` function that makes the call, its type arguments
    // after the arguments tuple's, and the input stream it takes, if any.
    let (ret, function, returned, unwrap) = match (&stream_item, &input) {
        (Some(item), None) => (
            quote!(::rpc_core::__private::RpcStream<#item>),
            quote!(call_stream),
            quote!(#item),
            TokenStream::new(),
        ),
        (Some(item), Some(_)) => (
            quote!(::rpc_core::__private::RpcStream<#item>),
            quote!(call_duplex),
            quote!(#item, _),
            TokenStream::new(),
        ),
        (None, Some(_)) => (ret, quote!(call_with_input), quote!(#decoded, _), unwrap),
        (None, None) => (ret, quote!(call), quote!(#decoded), unwrap),
    };
    let input = input.map(|name| quote!(#name,));
    let idempotent = method.options.idempotent.is_some();
    let call = quote! {
        ::rpc_core::__private::#function::<C, #args_ty, #returned>(
            &self.__caller,
            &self.__targets[#index],
            &(#(#values,)*),
            #input
            self.__timeout,
            #idempotent,
        )
        .await
        #unwrap
    };

    quote! {
        #(#docs)*
        #separator
        #[doc = #calls]
        pub async fn #ident(
            &self,
            #(#params),*
        ) -> ::core::result::Result<#ret, ::rpc_core::__private::RpcError> {
            #call
        }
    }
}

/// One `pub fn` of the blocking stub: the async stub's method, run to its
/// end on the connection's runtime.
fn blocking_method(method: &Method, service: &Service) -> TokenStream {
    let ident = method.ident();
    let docs = &method.docs;
    let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
    let (wire, _) = method.wire_name();
    let calls = format!(
        " Calls `{wire}` on the remote object and blocks until it is answered. Panics \
         when called from async code (use the async stub there)."
    );
    let mut params = Vec::new();
    let mut values = Vec::new();
    for (i, arg) in method.args.iter().enumerate() {
        if arg.context {
            continue;
        }
        let name = arg_name(arg, i);
        match &arg.stream {
            Some(item) => params.push(input_param(&name, item, service)),
            None => {
                let ty = concrete(&arg.ty, &service.self_ty);
                params.push(quote!(#name: #ty));
            }
        }
        values.push(quote!(#name));
    }
    let ret = return_type(method, &service.self_ty);
    quote! {
        #(#docs)*
        #separator
        #[doc = #calls]
        pub fn #ident(
            &self,
            #(#params),*
        ) -> ::core::result::Result<#ret, ::rpc_core::__private::RpcError> {
            ::rpc_core::__private::block_on(&self.__runtime, self.__inner.#ident(#(#values),*))
        }
    }
}

/// The stub's parameter for the stream a method takes: any `Stream` of its
/// items.
fn input_param(name: &Ident, item: &syn::Type, service: &Service) -> TokenStream {
    let item = concrete(item, &service.self_ty);
    quote! {
        #name: impl ::rpc_core::__private::Stream<Item = #item>
            + ::core::marker::Send
            + 'static
    }
}
