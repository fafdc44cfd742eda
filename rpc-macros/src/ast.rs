//! The model of an `#[expose]` impl block: the service, its methods and
//! their arguments. Each part keeps the `syn` nodes it came from, so that
//! `check` can point at the user's tokens and `expand` can reuse them.
//!
//! Building the model also removes the `#[expose(...)]` helper attributes
//! from the impl block, which is then emitted unchanged otherwise.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{
    Attribute, FnArg, Generics, Ident, ImplItem, Item, LitStr, Pat, Receiver, ReturnType,
    Signature, Type, Visibility,
};

use crate::attr::{self, MethodOptions};
use crate::check::Errors;

/// An `#[expose]` impl block.
pub(crate) struct Service {
    /// The type the block implements, as written.
    pub(crate) self_ty: Type,
    /// The last segment of the type's path: names the client stub.
    pub(crate) ident: Ident,
    /// The block's generics (rejected by `check`).
    pub(crate) generics: Generics,
    /// `#[expose(name = "...")]` on the block.
    pub(crate) name: Option<LitStr>,
    /// `#[expose(blocking)]` on the block: every synchronous method that
    /// does not return a stream runs on the blocking pool.
    pub(crate) blocking: Option<Span>,
    /// `#[expose(local)]` on the block: the object is bound to one thread,
    /// and the block implements `LocalService` instead of `Service`.
    pub(crate) local: Option<Span>,
    /// The block's `#[cfg]` attributes, copied onto every generated item.
    pub(crate) cfgs: Vec<Attribute>,
    /// Every method of the block, in source order, exposed or not.
    pub(crate) methods: Vec<Method>,
    /// Helper attributes found where they mean nothing (on consts, types, or
    /// a second `#[expose]` on the block); `check` reports them.
    pub(crate) stray: Vec<Attribute>,
}

/// What a method of the block is to the macro.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    /// Callable remotely: `pub`, with a `self` receiver, not skipped.
    /// (`check` then requires the receiver to be `&self`.)
    Exposed,
    /// `#[expose(skip)]`.
    Skipped,
    /// `#[expose(close)]`: the close hook.
    Close,
    /// Not `pub`, or without a receiver: left alone.
    Local,
}

/// One method of the block.
pub(crate) struct Method {
    /// The signature as written.
    pub(crate) sig: Signature,
    /// The method's role, from its visibility, receiver and options.
    pub(crate) role: Role,
    /// Its `#[expose(...)]` options.
    pub(crate) options: MethodOptions,
    /// `#[doc]` attributes, copied onto the client stub's method.
    pub(crate) docs: Vec<Attribute>,
    /// `#[cfg]` attributes (rejected on exposed methods and the close hook).
    pub(crate) cfgs: Vec<Attribute>,
    /// `#[cfg_attr]` attributes that contain an `expose` option, which the
    /// macro cannot see through (rejected by `check`).
    pub(crate) hidden_options: Vec<Attribute>,
    /// The parameters after the receiver.
    pub(crate) args: Vec<Arg>,
}

/// One parameter of a method, after the receiver.
pub(crate) struct Arg {
    /// The attributes on the parameter.
    pub(crate) attrs: Vec<Attribute>,
    /// The pattern as written (`check` allows a name, `mut name` or `_`).
    pub(crate) pat: Pat,
    /// The type as written.
    pub(crate) ty: Type,
    /// Whether the type is `CallContext` (filled in by the runtime, not sent).
    pub(crate) context: bool,
    /// For `RpcStream<T>`: `T`, the items of the stream the caller sends
    /// with the call (not part of the arguments tuple).
    pub(crate) stream: Option<Type>,
}

impl Service {
    /// Builds the model from the item under `#[expose(args)]`, removing the
    /// helper attributes from `item` on the way.
    ///
    /// Returns `None`, with an error in `errors`, when the item is not an
    /// inherent impl block of a named type.
    pub(crate) fn from_item(
        args: TokenStream,
        item: &mut Item,
        errors: &mut Errors,
    ) -> Option<Self> {
        let options = attr::block(args, errors);
        let Item::Impl(block) = item else {
            errors.push(syn::Error::new_spanned(
                item_head(item),
                "#[expose] goes on an inherent impl block (`impl Type { ... }`)",
            ));
            return None;
        };

        let mut stray = attr::take(&mut block.attrs);
        let mut methods = Vec::new();
        for impl_item in &mut block.items {
            match impl_item {
                ImplItem::Fn(f) => {
                    let ours = attr::take(&mut f.attrs);
                    let options = attr::method(&ours, errors);
                    methods.push(Method::new(&f.vis, &f.attrs, &f.sig, options));
                }
                ImplItem::Const(c) => stray.extend(attr::take(&mut c.attrs)),
                ImplItem::Type(t) => stray.extend(attr::take(&mut t.attrs)),
                ImplItem::Macro(m) => stray.extend(attr::take(&mut m.attrs)),
                _ => {}
            }
        }

        if let Some((bang, path, for_token)) = &block.trait_ {
            let mut head = TokenStream::new();
            bang.to_tokens(&mut head);
            path.to_tokens(&mut head);
            for_token.to_tokens(&mut head);
            errors.push(syn::Error::new_spanned(
                head,
                "#[expose] goes on an inherent impl block (`impl Type { ... }`), \
                 not on a trait impl",
            ));
            return None;
        }

        let ident = match &*block.self_ty {
            Type::Path(path) if path.qself.is_none() => {
                path.path.segments.last().map(|s| s.ident.clone())
            }
            _ => None,
        };
        let Some(ident) = ident else {
            errors.push(syn::Error::new_spanned(
                &block.self_ty,
                "#[expose] needs a named type (`impl MyType { ... }`)",
            ));
            return None;
        };

        Some(Service {
            self_ty: (*block.self_ty).clone(),
            ident,
            generics: block.generics.clone(),
            name: options.name,
            blocking: options.blocking,
            local: options.local,
            cfgs: block
                .attrs
                .iter()
                .filter(|a| a.path().is_ident("cfg"))
                .cloned()
                .collect(),
            methods,
            stray,
        })
    }

    /// The name the object is exposed under by default: the block's `name`
    /// option, or the type's name.
    pub(crate) fn object_name(&self) -> String {
        match &self.name {
            Some(lit) => lit.value(),
            None => self.ident.unraw().to_string(),
        }
    }

    /// The exposed methods, in the order of their dispatch indices.
    pub(crate) fn exposed(&self) -> impl Iterator<Item = &Method> {
        self.methods.iter().filter(|m| m.role == Role::Exposed)
    }

    /// The close hook, if there is one (the first, if `check` found several).
    pub(crate) fn close_hook(&self) -> Option<&Method> {
        self.methods.iter().find(|m| m.role == Role::Close)
    }
}

impl Method {
    fn new(vis: &Visibility, attrs: &[Attribute], sig: &Signature, options: MethodOptions) -> Self {
        let role = if options.skip.is_some() {
            Role::Skipped
        } else if options.close.is_some() {
            Role::Close
        } else if matches!(vis, Visibility::Public(_)) && sig.receiver().is_some() {
            Role::Exposed
        } else {
            Role::Local
        };
        let args = sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(arg) => Some(Arg {
                    attrs: arg.attrs.clone(),
                    pat: (*arg.pat).clone(),
                    ty: (*arg.ty).clone(),
                    context: is_context(&arg.ty),
                    stream: stream_arg_item(&arg.ty),
                }),
                FnArg::Receiver(_) => None,
            })
            .collect();
        Method {
            sig: sig.clone(),
            role,
            options,
            docs: attrs
                .iter()
                .filter(|a| a.path().is_ident("doc"))
                .cloned()
                .collect(),
            cfgs: attrs
                .iter()
                .filter(|a| a.path().is_ident("cfg"))
                .cloned()
                .collect(),
            hidden_options: attrs
                .iter()
                .filter(|a| a.path().is_ident("cfg_attr") && mentions_expose(a.to_token_stream()))
                .cloned()
                .collect(),
            args,
        }
    }

    /// The Rust name of the method.
    pub(crate) fn ident(&self) -> &Ident {
        &self.sig.ident
    }

    /// The name the method is called by over the wire, and where it was
    /// written (the `name` option, or the method's name).
    pub(crate) fn wire_name(&self) -> (String, Span) {
        match &self.options.name {
            Some(lit) => (lit.value(), lit.span()),
            None => (self.sig.ident.unraw().to_string(), self.sig.ident.span()),
        }
    }

    /// The span of the parameter list, parentheses included.
    pub(crate) fn params_span(&self) -> Span {
        self.sig.paren_token.span.join()
    }

    /// The receiver, if the method has one.
    pub(crate) fn receiver(&self) -> Option<&Receiver> {
        self.sig.receiver()
    }

    /// Whether the method is `async`.
    pub(crate) fn is_async(&self) -> bool {
        self.sig.asyncness.is_some()
    }

    /// The declared return type; `None` for `()`, written or not.
    pub(crate) fn output(&self) -> Option<&Type> {
        match &self.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => match &**ty {
                Type::Tuple(t) if t.elems.is_empty() => None,
                ty => Some(ty),
            },
        }
    }

    /// The parameters that travel in the arguments tuple (all but the
    /// `CallContext` and the input stream).
    pub(crate) fn wire_args(&self) -> impl Iterator<Item = &Arg> {
        self.args
            .iter()
            .filter(|a| !a.context && a.stream.is_none())
    }

    /// Whether the method runs on the blocking pool: marked so (or its
    /// block is), synchronous, and not returning a stream.
    pub(crate) fn runs_blocking(&self, block: Option<Span>) -> bool {
        (self.options.blocking.is_some() || block.is_some())
            && !self.is_async()
            && self.stream_output().is_none()
    }

    /// The parameter that receives the caller's stream, if any.
    pub(crate) fn input(&self) -> Option<&Arg> {
        self.args.iter().find(|a| a.stream.is_some())
    }

    /// For a method returning `impl Stream<Item = T>`: `T`.
    pub(crate) fn stream_output(&self) -> Option<&Type> {
        let Type::ImplTrait(t) = self.output()? else {
            return None;
        };
        t.bounds.iter().find_map(|bound| {
            let syn::TypeParamBound::Trait(bound) = bound else {
                return None;
            };
            let last = bound.path.segments.last()?;
            if last.ident != "Stream" {
                return None;
            }
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            args.args.iter().find_map(|arg| match arg {
                syn::GenericArgument::AssocType(assoc) if assoc.ident == "Item" => Some(&assoc.ty),
                _ => None,
            })
        })
    }
}

/// For a type written `RpcStream<T>` (by any path ending in that name): `T`.
pub(crate) fn stream_arg_item(ty: &Type) -> Option<Type> {
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last()?;
            if last.ident != "RpcStream" {
                return None;
            }
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            match args.args.iter().collect::<Vec<_>>().as_slice() {
                [syn::GenericArgument::Type(item)] => Some(item.clone()),
                _ => None,
            }
        }
        Type::Paren(inner) => stream_arg_item(&inner.elem),
        Type::Group(inner) => stream_arg_item(&inner.elem),
        _ => None,
    }
}

/// Whether `ty` names `CallContext` (by any path ending in that name).
pub(crate) fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "CallContext" && s.arguments.is_none()),
        Type::Paren(inner) => is_context(&inner.elem),
        Type::Group(inner) => is_context(&inner.elem),
        _ => false,
    }
}

/// Whether a token stream contains the identifier `expose` at any depth.
fn mentions_expose(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Ident(ident) => ident == "expose",
        proc_macro2::TokenTree::Group(group) => mentions_expose(group.stream()),
        _ => false,
    })
}

/// The tokens that introduce an item (`struct Name`, `fn name`, ...), to
/// point at when `#[expose]` is on the wrong kind of item.
fn item_head(item: &Item) -> TokenStream {
    let mut head = TokenStream::new();
    match item {
        Item::Struct(s) => {
            s.struct_token.to_tokens(&mut head);
            s.ident.to_tokens(&mut head);
        }
        Item::Enum(e) => {
            e.enum_token.to_tokens(&mut head);
            e.ident.to_tokens(&mut head);
        }
        Item::Union(u) => {
            u.union_token.to_tokens(&mut head);
            u.ident.to_tokens(&mut head);
        }
        Item::Trait(t) => {
            t.trait_token.to_tokens(&mut head);
            t.ident.to_tokens(&mut head);
        }
        Item::Fn(f) => {
            f.sig.fn_token.to_tokens(&mut head);
            f.sig.ident.to_tokens(&mut head);
        }
        Item::Mod(m) => {
            m.mod_token.to_tokens(&mut head);
            m.ident.to_tokens(&mut head);
        }
        other => other.to_tokens(&mut head),
    }
    head
}
