//! The `#[expose(...)]` options: `name`, `blocking` and `local` on the impl
//! block, and `name`, `skip`, `close`, `blocking` and `idempotent` on its
//! methods.
//!
//! Parsing only records what was written (with spans); whether a combination
//! makes sense is decided in `check`. Unknown and repeated keys are reported
//! here, and parsing goes on after them so that every mistake shows at once.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Attribute, LitStr, Meta, Token};

use crate::check::Errors;

/// The options of `#[expose(...)]` on the impl block.
#[derive(Default)]
pub(crate) struct BlockOptions {
    /// `name = "..."`: the name the object is exposed under by default.
    pub(crate) name: Option<LitStr>,
    /// `blocking`: every synchronous method runs on the blocking pool.
    pub(crate) blocking: Option<Span>,
    /// `local`: the object is bound to one thread (need not be `Send`).
    pub(crate) local: Option<Span>,
}

/// The options of the `#[expose(...)]` attributes on one method.
#[derive(Default)]
pub(crate) struct MethodOptions {
    /// `name = "..."`: the wire name, instead of the Rust name.
    pub(crate) name: Option<LitStr>,
    /// `skip`: the span of the keyword.
    pub(crate) skip: Option<Span>,
    /// `close`: the span of the keyword.
    pub(crate) close: Option<Span>,
    /// `blocking`: runs on the blocking pool; the span of the keyword.
    pub(crate) blocking: Option<Span>,
    /// `idempotent`: running it twice does no harm, so a balanced caller
    /// may repeat it; the span of the keyword.
    pub(crate) idempotent: Option<Span>,
}

/// Whether `attr` is one of ours: `#[expose ...]` or `#[rpc_core::expose ...]`.
pub(crate) fn is_expose(attr: &Attribute) -> bool {
    let path = attr.path();
    let mut segments = path.segments.iter().map(|s| s.ident.to_string());
    match (segments.next(), segments.next(), segments.next()) {
        (Some(a), None, None) => a == "expose" && path.leading_colon.is_none(),
        (Some(a), Some(b), None) => a == "rpc_core" && b == "expose",
        _ => false,
    }
}

/// Removes and returns the `#[expose ...]` attributes in `attrs`.
pub(crate) fn take(attrs: &mut Vec<Attribute>) -> Vec<Attribute> {
    let (ours, rest) = std::mem::take(attrs).into_iter().partition(is_expose);
    *attrs = rest;
    ours
}

/// Parses the arguments of the `#[expose(...)]` on the impl block.
pub(crate) fn block(args: TokenStream, errors: &mut Errors) -> BlockOptions {
    let mut options = BlockOptions::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            if let Some(lit) = string_value(&meta, errors)? {
                set_once(&mut options.name, lit, &meta, errors);
            }
        } else if meta.path.is_ident("blocking") {
            flag(&mut options.blocking, &meta, errors)?;
        } else if meta.path.is_ident("local") {
            flag(&mut options.local, &meta, errors)?;
        } else if meta.path.is_ident("skip") || meta.path.is_ident("close") {
            errors.push(meta.error(format!(
                "`{}` goes on a method; on the impl block the options are `name = \"...\"`, \
                 `blocking` and `local`",
                path_string(&meta)
            )));
            skip_rest(&meta)?;
        } else {
            errors.push(meta.error(format!(
                "unknown option `{}`: on the impl block the options are `name = \"...\"`, \
                 `blocking` and `local`",
                path_string(&meta)
            )));
            skip_rest(&meta)?;
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
    }
    options
}

/// Parses the `#[expose(...)]` attributes taken from one method; several
/// attributes combine as if they were one.
pub(crate) fn method(attrs: &[Attribute], errors: &mut Errors) -> MethodOptions {
    let mut options = MethodOptions::default();
    for attr in attrs {
        let list = match &attr.meta {
            Meta::List(list) => list,
            Meta::Path(_) | Meta::NameValue(_) => {
                errors.push(syn::Error::new_spanned(
                    attr,
                    "expected `#[expose(name = \"...\")]`, `#[expose(skip)]` or \
                     `#[expose(close)]`; `pub` methods taking `&self` are exposed \
                     without an attribute",
                ));
                continue;
            }
        };
        let result = list.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                if let Some(lit) = string_value(&meta, errors)? {
                    set_once(&mut options.name, lit, &meta, errors);
                }
            } else if meta.path.is_ident("skip") {
                flag(&mut options.skip, &meta, errors)?;
            } else if meta.path.is_ident("close") {
                flag(&mut options.close, &meta, errors)?;
            } else if meta.path.is_ident("blocking") {
                flag(&mut options.blocking, &meta, errors)?;
            } else if meta.path.is_ident("idempotent") {
                flag(&mut options.idempotent, &meta, errors)?;
            } else {
                errors.push(meta.error(format!(
                    "unknown option `{}`: expected `name = \"...\"`, `skip`, `close`, \
                     `blocking` or `idempotent`",
                    path_string(&meta)
                )));
                skip_rest(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
    options
}

/// Reads `= "..."`; on a malformed value reports it and skips to the next key.
fn string_value(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<LitStr>> {
    if !meta.input.peek(Token![=]) {
        errors.push(meta.error(format!("expected `{} = \"...\"`", path_string(meta))));
        skip_rest(meta)?;
        return Ok(None);
    }
    match meta.value().and_then(|value| value.parse::<LitStr>()) {
        Ok(lit) => Ok(Some(lit)),
        Err(error) => {
            errors.push(error);
            skip_rest(meta)?;
            Ok(None)
        }
    }
}

/// Records a key that takes no value (`skip`, `close`).
fn flag(
    slot: &mut Option<Span>,
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<()> {
    if !(meta.input.is_empty() || meta.input.peek(Token![,])) {
        errors.push(meta.error(format!("`{}` takes no value", path_string(meta))));
        skip_rest(meta)?;
        return Ok(());
    }
    let span = meta
        .path
        .get_ident()
        .map_or_else(Span::call_site, |i| i.span());
    set_once(slot, span, meta, errors);
    Ok(())
}

/// Stores `value` unless the key was already given, which is an error.
fn set_once<T>(slot: &mut Option<T>, value: T, meta: &ParseNestedMeta<'_>, errors: &mut Errors) {
    if slot.is_some() {
        errors.push(meta.error(format!("`{}` is given more than once", path_string(meta))));
    } else {
        *slot = Some(value);
    }
}

/// Skips what follows a rejected key, up to the next `,`, so that the keys
/// after it are still parsed.
fn skip_rest(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    meta.input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

/// The key as written, for messages.
fn path_string(meta: &ParseNestedMeta<'_>) -> String {
    meta.path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}
