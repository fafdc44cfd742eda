//! The server side: `impl Service for Type` (or `impl LocalService` for a
//! `local` block), whose `dispatch` matches on the method index and calls
//! the user's method with the decoded arguments.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use quote::ToTokens;
use syn::spanned::Spanned;

use super::{is_byte_vec, spanned_tuple};
use crate::ast::{Method, Service};

/// What differs between a `Service` and a `LocalService` impl: the trait,
/// the pointer `dispatch` takes, and the type of what it returns.
struct Flavor {
    local: bool,
}

impl Flavor {
    fn handled(&self) -> TokenStream {
        if self.local {
            quote!(::rpc_core::__private::LocalHandled)
        } else {
            quote!(::rpc_core::__private::Handled)
        }
    }

    /// `pending` or `pending_local`, spanned at the user's method.
    fn pending(&self, span: proc_macro2::Span) -> TokenStream {
        if self.local {
            quote_spanned!(span=> ::rpc_core::__private::pending_local)
        } else {
            quote_spanned!(span=> ::rpc_core::__private::pending)
        }
    }
}

/// `impl ::rpc_core::__private::Service for Type { ... }`, or
/// `LocalService` for a `local` block.
pub(super) fn service_impl(service: &Service) -> TokenStream {
    let flavor = Flavor {
        local: service.local.is_some(),
    };
    let handled = flavor.handled();
    let self_ty = &service.self_ty;
    let cfgs = &service.cfgs;
    let name = service.object_name();
    let wire_names = service.exposed().map(|m| m.wire_name().0);
    let arms: Vec<TokenStream> = service
        .exposed()
        .enumerate()
        .map(|(index, method)| {
            arm(
                &flavor,
                index,
                method,
                method.runs_blocking(service.blocking),
            )
        })
        .collect();
    let body = if arms.is_empty() {
        quote! {
            let _ = __method;
            #handled::Done(__call.unknown_method())
        }
    } else {
        quote! {
            match __method {
                #(#arms)*
                _ => #handled::Done(__call.unknown_method()),
            }
        }
    };
    let close = service.close_hook().map(|hook| close_hook(&flavor, hook));
    let (service_trait, pointer, thread_safe) = if flavor.local {
        (
            quote!(::rpc_core::__private::LocalService),
            quote!(::std::rc::Rc<Self>),
            TokenStream::new(),
        )
    } else {
        // A type that is not `Send + Sync` is reported once, by a check
        // whose name says what to do instead (`#[expose(local)]`); the
        // impl itself states the bound (higher-ranked, so that it is not a
        // second error where it does not hold) instead of failing too.
        let check = quote_spanned! {self_ty.span()=>
            #(#cfgs)*
            const _: fn() = ::rpc_core::__private::not_send_or_sync_use_expose_local::<#self_ty>;
        };
        (
            quote!(::rpc_core::__private::Service),
            quote!(::std::sync::Arc<Self>),
            check,
        )
    };
    let bound = (!flavor.local).then(|| {
        quote! {
            where for<'__rpc> #self_ty: ::core::marker::Send + ::core::marker::Sync
        }
    });

    quote! {
        #thread_safe
        #(#cfgs)*
        #[automatically_derived]
        impl #service_trait for #self_ty #bound {
            fn name() -> &'static ::core::primitive::str {
                #name
            }

            fn methods() -> &'static [&'static ::core::primitive::str] {
                &[#(#wire_names),*]
            }

            fn dispatch(
                self: #pointer,
                __method: ::core::primitive::usize,
                __call: ::rpc_core::__private::Incoming,
            ) -> #handled {
                #body
            }

            #close
        }
    }
}

/// One arm of the `match`: decode the arguments, call, reply.
fn arm(flavor: &Flavor, index: usize, method: &Method, blocking: bool) -> TokenStream {
    let handled = flavor.handled();
    let index = Literal::usize_unsuffixed(index);
    let ident = method.ident();
    let names: Vec<_> = (0..method.wire_args().count())
        .map(|i| format_ident!("__arg{}", i))
        .collect();
    // The tuple of the argument types takes the span of the user's
    // parameter list, so that a type that cannot be decoded is reported
    // there rather than at the attribute.
    let types = method.wire_args().map(|arg| {
        if is_byte_vec(&arg.ty) {
            quote_spanned!(arg.ty.span()=> ::rpc_core::__private::ByteBuf)
        } else {
            arg.ty.to_token_stream()
        }
    });
    let types = spanned_tuple(quote!(#(#types,)*), method.params_span());
    let bytes: Vec<bool> = method.wire_args().map(|arg| is_byte_vec(&arg.ty)).collect();

    // The call's arguments in declared order, the context in its place.
    let mut wire = names.iter().zip(bytes);
    let call_args: Vec<TokenStream> = method
        .args
        .iter()
        .map(|arg| match (arg.context, method.is_async() || blocking) {
            (true, true) => quote!(__context),
            (true, false) => quote!(__call.context()),
            (false, _) if arg.stream.is_some() => quote!(__input),
            (false, _) => match wire.next() {
                Some((name, true)) => quote!(#name.into_inner()),
                Some((name, false)) => quote!(#name),
                None => TokenStream::new(),
            },
        })
        .collect();
    // Only the path carries the user's span (so that errors about the call
    // point at the method); locals keep the macro's own span.
    let path = quote_spanned!(ident.span()=> Self::#ident);
    let call = quote!(#path(&*self, #(#call_args),*));

    let decode = quote! {
        let (#(#names,)*) = match __call.args::<#types>() {
            ::core::result::Result::Ok(__args) => __args,
            ::core::result::Result::Err(__error) => {
                return #handled::Done(__call.fail(__error));
            }
        };
    };

    // The caller's stream, opened (and granted its first credit) before
    // the handler runs.
    let decode = match method.input() {
        Some(arg) => {
            let item = arg.stream.as_ref().map(|t| t.to_token_stream());
            quote! {
                #decode
                let __input = match __call.input::<#item>() {
                    ::core::result::Result::Ok(__input) => __input,
                    ::core::result::Result::Err(__error) => {
                        return #handled::Done(__call.fail(__error));
                    }
                };
            }
        }
        None => decode,
    };
    if method.stream_output().is_some() {
        return stream_arm(flavor, &index, method, &call, &decode);
    }

    // The reply names the return type as the user wrote it, so that a type
    // that cannot be encoded is reported at that type.
    let reply = match method.output() {
        Some(ret) if is_byte_vec(ret) => {
            quote!(__call.reply(&::rpc_core::__private::AsBytes(&__ret)))
        }
        Some(ret) => quote!(__call.reply::<#ret>(&__ret)),
        None => quote!(__call.reply(&())),
    };
    let returns_unit = method.output().is_none();
    if method.is_async() {
        let context = method
            .args
            .iter()
            .any(|arg| arg.context)
            .then(|| quote!(let __context = __call.context();));
        let run = if returns_unit {
            quote! {
                #call.await;
                __call.reply(&())
            }
        } else {
            quote! {
                let __ret = #call.await;
                #reply
            }
        };
        let pending = flavor.pending(ident.span());
        quote! {
            #index => {
                #decode
                #context
                #pending(async move {
                    #run
                })
            }
        }
    } else if blocking {
        // On the blocking pool: the handler's task waits for it, so a
        // deadline or a cancel answers the caller on time (the closure
        // itself runs to its end), and a panic is the handler's panic.
        let context = method
            .args
            .iter()
            .any(|arg| arg.context)
            .then(|| quote!(let __context = __call.context();));
        let blocking_call = quote!(#path(&*__this, #(#call_args),*));
        let answer = if returns_unit {
            quote!(__call.reply(&()))
        } else {
            reply
        };
        let pending = quote_spanned!(ident.span()=> ::rpc_core::__private::pending);
        quote! {
            #index => {
                #decode
                #context
                let __this = ::std::sync::Arc::clone(&self);
                #pending(async move {
                    let __ret = ::rpc_core::__private::run_blocking(move || #blocking_call).await;
                    let __ret = match __ret {
                        ::core::result::Result::Ok(__ret) => __ret,
                        ::core::result::Result::Err(__panic) => ::std::panic::resume_unwind(__panic),
                    };
                    let _ = &__ret;
                    #answer
                })
            }
        }
    } else {
        let run = if returns_unit {
            quote! {
                #call;
                #handled::Done(__call.reply(&()))
            }
        } else {
            quote! {
                let __ret = #call;
                #handled::Done(#reply)
            }
        };
        quote! {
            #index => {
                #decode
                #run
            }
        }
    }
}

/// The arm of a method that returns a stream: the call is answered with
/// the stream, which then runs to its end in the handler's task.
fn stream_arm(
    flavor: &Flavor,
    index: &Literal,
    method: &Method,
    call: &TokenStream,
    decode: &TokenStream,
) -> TokenStream {
    let ident = method.ident();
    let pending = flavor.pending(ident.span());
    let context = method
        .args
        .iter()
        .any(|arg| arg.context && method.is_async())
        .then(|| quote!(let __context = __call.context();));
    let run = if method.is_async() {
        quote! {
            #pending(async move {
                let __ret = #call.await;
                __call.stream(__ret).await
            })
        }
    } else {
        quote! {
            let __ret = #call;
            #pending(__call.stream(__ret))
        }
    };
    quote! {
        #index => {
            #decode
            #context
            #run
        }
    }
}

/// `fn close`, calling the user's close hook. The hook runs when the
/// returned future is first polled, not when `close` is called, so that a
/// synchronous hook never runs inside the caller's locks.
fn close_hook(flavor: &Flavor, method: &Method) -> TokenStream {
    let ident = method.ident();
    let path = quote_spanned!(ident.span()=> Self::#ident);
    let call = quote!(#path(&*self));
    let run = if method.is_async() {
        quote!(#call.await;)
    } else {
        quote!(#call;)
    };
    let (pointer, send) = if flavor.local {
        (quote!(::std::rc::Rc<Self>), TokenStream::new())
    } else {
        (
            quote!(::std::sync::Arc<Self>),
            quote!(+ ::core::marker::Send),
        )
    };
    quote! {
        fn close(
            self: #pointer,
        ) -> ::core::pin::Pin<
            ::std::boxed::Box<dyn ::core::future::Future<Output = ()> #send + 'static>,
        > {
            ::std::boxed::Box::pin(async move {
                #run
            })
        }
    }
}
