//! The rules an `#[expose]` block must follow, each reported at the tokens
//! that break it. Every problem is collected before anything is reported,
//! so the user sees them all in one build.

use std::collections::HashMap;

use proc_macro2::Span;
use quote::ToTokens;
use syn::visit::{self, Visit};
use syn::{GenericParam, Pat, PathArguments, Type};

use crate::ast::{Method, Role, Service};

/// The errors found so far, combined into one.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Adds an error that points at `tokens`.
    pub(crate) fn at<T: ToTokens>(&mut self, tokens: T, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Adds an error that points at `span`.
    pub(crate) fn at_span(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// `Ok` when no error was added, else all of them as one.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The names of the items that the client stub defines itself: a method
/// with one of these names would collide with them.
const STUB_ITEMS: &[&str] = &[
    "new",
    "with_name",
    "with_timeout",
    "peer",
    "NAME",
    "METHODS",
];

/// Checks the whole block.
pub(crate) fn service(service: &Service, errors: &mut Errors) {
    for attr in &service.stray {
        errors.at(
            attr,
            "#[expose(...)] goes on the impl block (once) and on its methods, nowhere else",
        );
    }

    let generics = &service.generics;
    if !generics.params.is_empty() {
        errors.at(
            &generics.params,
            "#[expose] does not support generic impl blocks: the remote side calls one \
             concrete type; expose a concrete type (or a newtype around one)",
        );
    } else if let Some(clause) = &generics.where_clause {
        errors.at(
            clause,
            "#[expose] does not support `where` clauses on the impl block",
        );
    } else if let Type::Path(path) = &service.self_ty {
        if let Some(last) = path.path.segments.last() {
            if !matches!(last.arguments, PathArguments::None) {
                errors.at(
                    &last.arguments,
                    "#[expose] does not support generic types: expose a newtype around \
                     this instantiation instead",
                );
            }
        }
    }

    if let (Some(_), Some(blocking)) = (service.local, service.blocking) {
        errors.at_span(
            blocking,
            "`blocking` and `local` cannot be combined: a `local` object's calls run on its \
             own thread, which it may block (no other object shares it)",
        );
    }
    if service.local.is_some() {
        for method in &service.methods {
            if let Some(span) = method.options.blocking {
                errors.at_span(
                    span,
                    "`blocking` cannot go on a method of a `local` object: its calls run on \
                     the object's own thread, which the method may block",
                );
            }
        }
    }

    if let Some(name) = &service.name {
        if name.value().is_empty() {
            errors.at(name, "the object name cannot be empty");
        }
    }

    let mut wire_names: HashMap<String, &Method> = HashMap::new();
    let mut close_hook: Option<&Method> = None;
    for method in &service.methods {
        if let Some(attr) = method.hidden_options.first() {
            errors.at(
                attr,
                "#[expose(...)] cannot be inside #[cfg_attr]: write it directly on the method",
            );
        }
        options(method, errors);
        match method.role {
            Role::Exposed => {
                exposed(method, errors);
                let (wire, span) = method.wire_name();
                if let Some(first) = wire_names.get(&wire) {
                    errors.at_span(
                        span,
                        format!(
                            "two exposed methods answer to `{wire}`: `{}` and `{}`; give one \
                             of them another name with #[expose(name = \"...\")]",
                            first.ident(),
                            method.ident()
                        ),
                    );
                } else {
                    wire_names.insert(wire, method);
                }
                let ident = method.ident();
                if STUB_ITEMS.iter().any(|item| ident == item) {
                    errors.at(
                        ident,
                        format!(
                            "an exposed method cannot be called `{ident}`: the client stub \
                             has its own `{ident}`; rename the method and keep the wire name \
                             with #[expose(name = \"{ident}\")]"
                        ),
                    );
                }
            }
            Role::Close => {
                close(method, errors);
                if let (Some(first), Some(span)) = (close_hook, method.options.close) {
                    errors.at_span(
                        span,
                        format!(
                            "a second close hook: `{}` is already the close hook",
                            first.ident()
                        ),
                    );
                } else {
                    close_hook = Some(method);
                }
            }
            Role::Skipped | Role::Local => {}
        }
    }
}

/// Combinations of options that make no sense, and invalid names.
fn options(method: &Method, errors: &mut Errors) {
    let options = &method.options;
    if let Some(skip) = options.skip {
        if options.name.is_some() {
            errors.at_span(
                skip,
                "`skip` cannot be combined with `name`: a skipped method has no wire name",
            );
        }
        if options.close.is_some() {
            errors.at_span(
                skip,
                "`skip` cannot be combined with `close`: the close hook is never exposed anyway",
            );
        }
        return;
    }
    if let (Some(name), Some(_)) = (&options.name, options.close) {
        errors.at(name, "the close hook is not exposed, so it takes no `name`");
        return;
    }
    if let Some(name) = &options.name {
        let value = name.value();
        if value.is_empty() {
            errors.at(name, "the method name cannot be empty");
        } else if value.contains('.') {
            errors.at(
                name,
                "a method name cannot contain `.`: calls address `object.method`",
            );
        }
        if method.role == Role::Local {
            errors.at(
                name,
                format!(
                    "`{}` is not exposed, so it takes no `name`: only `pub` methods taking \
                     `&self` are exposed",
                    method.ident()
                ),
            );
        }
    }
}

/// The rules for an exposed method.
fn exposed(method: &Method, errors: &mut Errors) {
    if let Some(span) = method.options.blocking {
        if method.is_async() {
            errors.at_span(
                span,
                "`blocking` goes on a synchronous method: an `async` one must not block \
                 (use `tokio::task::spawn_blocking` inside it)",
            );
        } else if method.stream_output().is_some() {
            errors.at_span(
                span,
                "`blocking` cannot go on a method that returns a stream: make the stream's \
                 items with `tokio::task::spawn_blocking` instead",
            );
        }
    }
    receiver(method, "exposed methods", errors);
    if let Some(cfg) = method.cfgs.first() {
        errors.at(
            cfg,
            "#[cfg] on an exposed method is not supported: the dispatch table and the client \
             stub must list the same methods; put #[cfg] on the whole impl block",
        );
    }
    common(method, "exposed methods", errors);

    let mut context: Option<&Type> = None;
    let mut input: Option<&Type> = None;
    for arg in &method.args {
        if let Some(attr) = arg.attrs.iter().find(|a| a.path().is_ident("cfg")) {
            errors.at(
                attr,
                "#[cfg] on a parameter of an exposed method is not supported: put #[cfg] on \
                 the whole impl block",
            );
        }
        match &arg.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {}
            Pat::Wild(_) => {}
            pat => errors.at(
                pat,
                "parameters of exposed methods must be plain names (`name: Type` or \
                 `mut name: Type`): the client stub reuses them; destructure in the body",
            ),
        }
        if arg.context {
            if context.is_some() {
                errors.at(
                    &arg.ty,
                    "a method takes at most one `CallContext` parameter",
                );
            }
            context = Some(&arg.ty);
        } else if let Some(item) = &arg.stream {
            if input.is_some() {
                errors.at(
                    &arg.ty,
                    "a method takes at most one `RpcStream` parameter: a call carries one \
                     stream from the caller",
                );
            }
            input = Some(&arg.ty);
            owned(item, Position::Argument, errors);
        } else {
            owned(&arg.ty, Position::Argument, errors);
        }
    }
    match (method.stream_output(), method.output()) {
        (Some(item), _) => owned(item, Position::Return, errors),
        (None, Some(ty)) => owned(ty, Position::Return, errors),
        (None, None) => {}
    }
}

/// The rules for the close hook.
fn close(method: &Method, errors: &mut Errors) {
    if method.receiver().is_none() {
        errors.at(&method.sig.ident, "the close hook must take `&self`");
    } else {
        receiver(method, "the close hook", errors);
    }
    if let Some(cfg) = method.cfgs.first() {
        errors.at(
            cfg,
            "#[cfg] on the close hook is not supported: put #[cfg] on the whole impl block",
        );
    }
    common(method, "the close hook", errors);
    if let Some(arg) = method.args.first() {
        errors.at(&arg.ty, "the close hook takes no arguments besides `&self`");
    }
    if let syn::ReturnType::Type(_, ty) = &method.sig.output {
        if method.output().is_some() {
            errors.at(ty, "the close hook must return `()`");
        }
    }
}

/// The receiver must be `&self` (or `self: &Self`).
fn receiver(method: &Method, what: &str, errors: &mut Errors) {
    let Some(receiver) = method.receiver() else {
        return;
    };
    match &*receiver.ty {
        Type::Reference(r) if r.mutability.is_none() && is_self(&r.elem) => {}
        Type::Reference(r) if r.mutability.is_some() => errors.at(
            receiver,
            format!(
                "{what} take `&self`, not `&mut self`: calls may run concurrently, so keep \
                 mutable state behind a `Mutex` or atomics (or mark the method #[expose(skip)])"
            ),
        ),
        _ => errors.at(
            receiver,
            format!(
                "{what} take `&self`: the object is shared by every connection, so it \
                 cannot be taken by value or through another pointer type (mark the method \
                 #[expose(skip)] to keep it local)"
            ),
        ),
    }
}

/// Rules shared by exposed methods and the close hook.
fn common(method: &Method, what: &str, errors: &mut Errors) {
    let generics = &method.sig.generics;
    let only_lifetimes = generics
        .params
        .iter()
        .all(|param| matches!(param, GenericParam::Lifetime(_)));
    if !generics.params.is_empty() && only_lifetimes {
        errors.at(
            &generics.params,
            format!(
                "{what} cannot have lifetime parameters: arguments and return values cross \
                 the wire and must be owned types (write `&self`)"
            ),
        );
    } else if !generics.params.is_empty() {
        errors.at(
            &generics.params,
            format!(
                "{what} cannot be generic: the caller on the other side has to know the \
                 concrete types"
            ),
        );
    } else if let Some(clause) = &generics.where_clause {
        errors.at(clause, format!("{what} cannot have a `where` clause"));
    }
    if let Some(unsafety) = &method.sig.unsafety {
        errors.at(unsafety, format!("{what} cannot be `unsafe`"));
    }
    if let Some(variadic) = &method.sig.variadic {
        errors.at(variadic, format!("{what} cannot be variadic"));
    }
}

fn is_self(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self"))
}

#[derive(Clone, Copy)]
enum Position {
    Argument,
    Return,
}

/// Arguments and return values cross the wire, so they are owned: no
/// references, no lifetimes, no `impl Trait`.
fn owned(ty: &Type, position: Position, errors: &mut Errors) {
    struct Owned<'e> {
        position: Position,
        errors: &'e mut Errors,
    }

    impl<'ast> Visit<'ast> for Owned<'_> {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            let message = if crate::ast::is_context(&r.elem) {
                "take the `CallContext` by value (`cx: CallContext`)"
            } else {
                "references cannot cross the wire: exposed methods take and return owned \
                 values (`String` instead of `&str`, `Vec<T>` instead of `&[T]`)"
            };
            self.errors.at(r, message);
        }

        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            self.errors.at(
                lifetime,
                "lifetimes are not supported in exposed methods: arguments and return values \
                 cross the wire and must be owned types",
            );
        }

        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            let message = match self.position {
                Position::Argument => {
                    "`impl Trait` arguments are not supported in exposed methods: the caller \
                     needs one concrete type to encode"
                }
                Position::Return => {
                    "`impl Trait` return types are not supported in exposed methods, except \
                     `impl Stream<Item = T> + Send + 'static`: the caller needs one concrete \
                     type to decode"
                }
            };
            self.errors.at(t, message);
        }

        fn visit_type_path(&mut self, p: &'ast syn::TypePath) {
            if p.qself.is_none()
                && p.path.segments.len() > 1
                && p.path.segments.first().is_some_and(|s| s.ident == "Self")
            {
                self.errors.at(
                    p,
                    "write this type out instead of going through `Self::`: the client stub \
                     repeats it outside the impl block",
                );
                return;
            }
            visit::visit_type_path(self, p);
        }
    }

    Owned { position, errors }.visit_type(ty);
}
