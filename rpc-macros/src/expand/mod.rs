//! Writes the generated items: the `Service` impl (`dispatch`), the client
//! stub (`client`), and compile-time checks that every argument and return
//! type can cross the wire, placed so that a failing bound points at the
//! user's type.
//!
//! Generated code names everything by absolute path (`::core::...`,
//! `::std::...`, `::rpc_core::__private::...`) and prefixes its own locals
//! with `__`, so nothing the user's module defines can change its meaning.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{Item, Pat, Type};

use crate::ast::{Arg, Service};

mod client;
mod dispatch;

/// Everything `#[expose]` emits for a checked block: the block itself
/// (helper attributes already removed), then the generated items.
pub(crate) fn expose(item: &Item, service: &Service) -> TokenStream {
    let service_impl = dispatch::service_impl(service);
    let client_struct = client::client_struct(service);
    let client_impl = client::client_impl(service);
    let type_checks = type_checks(service);
    quote! {
        #item
        #service_impl
        #client_struct
        #client_impl
        #type_checks
    }
}

/// One `const _: fn() = assert_arg::<T>;` per argument and return type,
/// spanned at the type, so that "`T: Serialize` is not satisfied" points at
/// the parameter the user wrote.
fn type_checks(service: &Service) -> TokenStream {
    let cfgs = &service.cfgs;
    let mut out = TokenStream::new();
    for method in service.exposed() {
        for arg in method.wire_args() {
            let ty = concrete(&arg.ty, &service.self_ty);
            out.extend(quote_spanned! {arg.ty.span()=>
                #(#cfgs)*
                const _: fn() = ::rpc_core::__private::assert_arg::<#ty>;
            });
        }
        if let Some(item) = method.input().and_then(|arg| arg.stream.as_ref()) {
            let ty = concrete(item, &service.self_ty);
            out.extend(quote_spanned! {item.span()=>
                #(#cfgs)*
                const _: fn() = ::rpc_core::__private::assert_arg::<#ty>;
            });
        }
        if let Some(item) = method.stream_output() {
            let ty = concrete(item, &service.self_ty);
            out.extend(quote_spanned! {item.span()=>
                #(#cfgs)*
                const _: fn() = ::rpc_core::__private::assert_ret::<#ty>;
            });
        } else if let Some(ret) = method.output() {
            let ty = concrete(ret, &service.self_ty);
            out.extend(quote_spanned! {ret.span()=>
                #(#cfgs)*
                const _: fn() = ::rpc_core::__private::assert_ret::<#ty>;
            });
        }
    }
    out
}

/// Whether `ty` is written `Vec<u8>` (with any path to `Vec`). Such
/// arguments and return values travel through `__private::AsBytes` and
/// `__private::ByteBuf`: the same bytes on the wire as serde's sequence of
/// `u8`, encoded and decoded with one copy instead of a call per byte.
/// A type alias is not recognised; it still works, only slower.
fn is_byte_vec(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    if path.qself.is_some() {
        return false;
    }
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    if last.ident != "Vec" {
        return false;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    matches!(
        args.args.iter().collect::<Vec<_>>().as_slice(),
        [syn::GenericArgument::Type(Type::Path(inner))]
            if inner.qself.is_none() && inner.path.is_ident("u8")
    )
}

/// `ty` with `Self` replaced by the block's type, for use outside the block.
fn concrete(ty: &Type, self_ty: &Type) -> Type {
    struct ReplaceSelf<'a>(&'a Type);

    impl VisitMut for ReplaceSelf<'_> {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::Path(path) = ty {
                if path.qself.is_none() && path.path.is_ident("Self") {
                    *ty = self.0.clone();
                    return;
                }
            }
            visit_mut::visit_type_mut(self, ty);
        }
    }

    let mut ty = ty.clone();
    ReplaceSelf(self_ty).visit_type_mut(&mut ty);
    ty
}

/// The method's return type as the caller sees it: as declared, `()` when
/// there is none.
fn return_type(method: &crate::ast::Method, self_ty: &Type) -> TokenStream {
    match method.output() {
        Some(ty) => concrete(ty, self_ty).into_token_stream(),
        None => quote!(()),
    }
}

/// `( #elems )` as a tuple (type or expression) whose parentheses carry
/// `span`.
fn spanned_tuple(elems: TokenStream, span: Span) -> Group {
    let mut group = Group::new(Delimiter::Parenthesis, elems);
    group.set_span(span);
    group
}

/// The name a parameter goes by in the client stub: the user's, or
/// `__arg{index}` for `_`.
fn arg_name(arg: &Arg, index: usize) -> Ident {
    match &arg.pat {
        Pat::Ident(pat) => pat.ident.clone(),
        _ => format_ident!("__arg{}", index, span = arg.pat.span()),
    }
}
