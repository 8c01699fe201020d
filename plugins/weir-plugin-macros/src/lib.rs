//! `#[filter]`, `#[map]`, `#[filter_map]`, `#[flat_map]`, `#[aggregate]`, `#[route]`: turn one function
//! into a Weir plugin by generating the ABI exports (see `plugins/ABI.md`). The function stays
//! as written, so it can be unit-tested natively.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{FnArg, ItemFn, Type, parse_macro_input};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Filter,
    Map,
    FilterMap,
    FlatMap,
    Aggregate,
    Route,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Filter => 1,
            Kind::Map => 2,
            Kind::FilterMap => 3,
            Kind::FlatMap => 4,
            Kind::Aggregate => 5,
            Kind::Route => 6,
        }
    }

    /// Arguments before the optional params.
    fn fixed_args(self) -> usize {
        if self == Kind::Aggregate { 2 } else { 1 }
    }

    fn signature(self) -> &'static str {
        match self {
            Kind::Filter => "fn(&Record | RecordView<'_> [, &Params]) -> Result<bool, E>",
            Kind::Map => "fn(Record | RecordView<'_> [, &Params]) -> Result<Record, E>",
            Kind::FilterMap => {
                "fn(Record | RecordView<'_> [, &Params]) -> Result<Option<Record>, E>"
            }
            Kind::FlatMap => "fn(Record | RecordView<'_> [, &Params]) -> Result<Vec<Record>, E>",
            Kind::Aggregate => "fn(&mut State, Record [, &Params]) -> Result<Option<Record>, E>",
            Kind::Route => "fn(&Record | RecordView<'_> [, &Params]) -> Result<Option<u8>, E>",
        }
    }
}

/// Whether an argument is a borrowed record (`RecordView<'_>`, by value).
fn is_view(arg: &FnArg) -> bool {
    match arg {
        FnArg::Typed(t) => match &*t.ty {
            Type::Path(p) => p
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "RecordView"),
            _ => false,
        },
        FnArg::Receiver(_) => false,
    }
}

/// The `T` of an argument typed `&T` / `&mut T`.
fn referent(arg: &FnArg) -> Option<Type> {
    match arg {
        FnArg::Typed(t) => match &*t.ty {
            Type::Reference(r) => Some((*r.elem).clone()),
            _ => None,
        },
        FnArg::Receiver(_) => None,
    }
}

fn expand(kind: Kind, item: ItemFn) -> syn::Result<Tokens> {
    let name = &item.sig.ident;
    let args: Vec<&FnArg> = item.sig.inputs.iter().collect();
    let fixed = kind.fixed_args();
    let bad = || {
        syn::Error::new_spanned(
            &item.sig,
            format!(
                "a plugin function of this kind has the shape {}",
                kind.signature()
            ),
        )
    };
    if args.len() != fixed && args.len() != fixed + 1 {
        return Err(bad());
    }
    let with_params = args.len() == fixed + 1;
    let params_ty: Tokens = if with_params {
        let t = referent(args[fixed]).ok_or_else(bad)?;
        quote!(#t)
    } else {
        quote!(::weir_plugin::abi::NoParams)
    };
    let p = if with_params {
        quote!(, params)
    } else {
        quote!()
    };
    let code = kind.code();
    let err = quote!(.map_err(|e| e.to_string())?);
    // A plugin taking `RecordView<'_>` reads records borrowed from the input (no copies).
    let view = kind != Kind::Aggregate && is_view(args[0]);
    let process = match kind {
        Kind::Filter if view => quote! {
            ::weir_plugin::abi::process_filter_view(input, |r| {
                #name(r #p).map_err(|e| e.to_string())
            })
        },
        Kind::Map if view => quote! {
            ::weir_plugin::abi::process_view(input, |i, r, out| {
                let at = r.offset;
                let o = #name(r #p) #err;
                out.push(at, &o); ::weir_plugin::NewRecord::recycle(o);
                Ok(())
            })
        },
        Kind::FilterMap if view => quote! {
            ::weir_plugin::abi::process_view(input, |i, r, out| {
                let at = r.offset;
                if let Some(o) = #name(r #p) #err { out.push(at, &o); ::weir_plugin::NewRecord::recycle(o); }
                Ok(())
            })
        },
        Kind::FlatMap if view => quote! {
            ::weir_plugin::abi::process_view(input, |i, r, out| {
                let at = r.offset;
                for o in #name(r #p) #err { out.push(at, &o); ::weir_plugin::NewRecord::recycle(o); }
                Ok(())
            })
        },
        Kind::Route if view => quote! {
            ::weir_plugin::abi::process_route_view(input, |r| {
                #name(r #p).map_err(|e| e.to_string())
            })
        },
        Kind::Route => quote! {
            ::weir_plugin::abi::process_route(input, |r| {
                #name(r #p).map_err(|e| e.to_string())
            })
        },
        Kind::Filter => quote! {
            ::weir_plugin::abi::process_filter(input, |r| {
                #name(r #p).map_err(|e| e.to_string())
            })
        },
        Kind::Map => quote! {
            ::weir_plugin::abi::process(input, |i, r, out| {
                let at = r.offset;
                let o = #name(r #p) #err;
                out.push(at, &o); ::weir_plugin::NewRecord::recycle(o);
                Ok(())
            })
        },
        Kind::FilterMap => quote! {
            ::weir_plugin::abi::process(input, |i, r, out| {
                let at = r.offset;
                if let Some(o) = #name(r #p) #err { out.push(at, &o); ::weir_plugin::NewRecord::recycle(o); }
                Ok(())
            })
        },
        Kind::FlatMap => quote! {
            ::weir_plugin::abi::process(input, |i, r, out| {
                let at = r.offset;
                for o in #name(r #p) #err { out.push(at, &o); ::weir_plugin::NewRecord::recycle(o); }
                Ok(())
            })
        },
        Kind::Aggregate => {
            let state_ty = referent(args[0]).ok_or_else(bad)?;
            quote! {
                ::weir_plugin::abi::process_aggregate::<#state_ty>(input, |state, i, r, out| {
                    let at = r.offset;
                    if let Some(o) = #name(state, r #p) #err { out.push(at, &o); ::weir_plugin::NewRecord::recycle(o); }
                    Ok(())
                })
            }
        }
    };
    Ok(quote! {
        #item

        ::std::thread_local! {
            #[doc(hidden)]
            static __WEIR_PLUGIN_PARAMS: ::std::cell::RefCell<::std::option::Option<#params_ty>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }

        #[doc(hidden)]
        pub fn __weir_init(params: &[u8]) -> i32 {
            ::weir_plugin::abi::init::<#params_ty>(&__WEIR_PLUGIN_PARAMS, params)
        }

        #[doc(hidden)]
        pub fn __weir_process(input: &[u8]) -> i32 {
            __WEIR_PLUGIN_PARAMS.with_borrow(|params| {
                let ::std::option::Option::Some(params) = params else {
                    return ::weir_plugin::abi::fail_uninitialized();
                };
                let _ = params;
                #process
            })
        }

        /// This plugin's entry points, for native unit tests through the real ABI
        /// (`weir_plugin::testing::Harness`).
        pub const WEIR_PLUGIN: ::weir_plugin::abi::Plugin = ::weir_plugin::abi::Plugin {
            kind: #code,
            init: __weir_init,
            process: __weir_process,
        };

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn weir_abi_version() -> u32 { ::weir_plugin::abi::ABI_VERSION }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn weir_kind() -> u32 { #code }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn weir_alloc(len: u32) -> u32 { ::weir_plugin::abi::alloc(len) }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn weir_dealloc(ptr: u32, len: u32) {
            unsafe { ::weir_plugin::abi::dealloc(ptr, len) }
        }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn weir_result_ptr() -> u32 { ::weir_plugin::abi::result_ptr() }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn weir_result_len() -> u32 { ::weir_plugin::abi::result_len() }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn weir_offset() -> i64 { ::weir_plugin::abi::offset() }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn weir_panic_ptr() -> u32 { ::weir_plugin::abi::panic_ptr() }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn weir_panic_len() -> u32 { ::weir_plugin::abi::panic_len() }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn weir_init(ptr: u32, len: u32) -> i32 {
            ::weir_plugin::abi::with_input(ptr, len, __weir_init)
        }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn weir_process(ptr: u32, len: u32) -> i32 {
            ::weir_plugin::abi::with_input(ptr, len, __weir_process)
        }
    })
}

fn attribute(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "this attribute takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let item = parse_macro_input!(item as ItemFn);
    expand(kind, item)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}

/// `fn(&Record [, &Params]) -> Result<bool, E>`: keep a record (`true`) or drop it.
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    attribute(Kind::Filter, attr, item)
}

/// `fn(Record [, &Params]) -> Result<Record, E>`: replace each record.
#[proc_macro_attribute]
pub fn map(attr: TokenStream, item: TokenStream) -> TokenStream {
    attribute(Kind::Map, attr, item)
}

/// `fn(Record [, &Params]) -> Result<Option<Record>, E>`: replace or drop each record.
#[proc_macro_attribute]
pub fn filter_map(attr: TokenStream, item: TokenStream) -> TokenStream {
    attribute(Kind::FilterMap, attr, item)
}

/// `fn(Record [, &Params]) -> Result<Vec<Record>, E>`: zero or more records per record.
#[proc_macro_attribute]
pub fn flat_map(attr: TokenStream, item: TokenStream) -> TokenStream {
    attribute(Kind::FlatMap, attr, item)
}

/// `fn(&mut State, Record [, &Params]) -> Result<Option<Record>, E>`: fold each record into a
/// state the host keeps between batches; optionally emit a record.
#[proc_macro_attribute]
pub fn aggregate(attr: TokenStream, item: TokenStream) -> TokenStream {
    attribute(Kind::Aggregate, attr, item)
}

/// `fn(&Record | RecordView<'_> [, &P]) -> Result<Option<u8>, E>`: send the record, unchanged,
/// to one of a pipeline's outputs (`Some(0)`: the main one, `Some(k)`: its k-th `--to` topic
/// after the first, at most 7) or drop it (`None`). ABI version 4. At consume time a consumer
/// gets output 0's records.
#[proc_macro_attribute]
pub fn route(attr: TokenStream, item: TokenStream) -> TokenStream {
    attribute(Kind::Route, attr, item)
}
