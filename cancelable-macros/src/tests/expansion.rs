//! What the macro expands to.

use super::*;

#[test]
fn expansion_keeps_the_signature_and_attributes() {
    let item = quote!(
        /// Docs.
        #[inline]
        pub(crate) async fn job<'a, T: Clone + 'a, U>(
            &'a self,
            x: &'a T,
            y: impl Into<U>,
            (a, b): (u8, u8),
        ) -> Result<&'a T, E>
        where
            U: Send,
        {
            #![allow(unused_variables)]
            Ok(x)
        }
    );
    let original: syn::ItemFn = syn::parse2(item.clone()).unwrap();
    let expanded = expand_ok(quote!(), item);
    assert_eq!(expanded.sig, original.sig);
    assert_eq!(expanded.attrs, original.attrs);
    assert_eq!(expanded.vis, original.vis);
    assert_eq!(expanded.block.stmts.len(), 3, "scope, body, run");
    let block = &expanded.block;
    let body = quote!(#block).to_string();
    let whole = quote!(#expanded).to_string();
    assert!(
        whole.contains("{ # ! [allow (unused_variables)] let __cancelable_scope"),
        "{whole}"
    );
    assert!(body.contains(". name (\"job\")"), "{body}");
}

#[test]
fn expansion_of_every_argument() {
    let body = expanded_body(
        quote!(
            timeout = "1m30s",
            on_signal = ["SIGINT", "SIGUSR2"],
            token = tok,
            condition = stop_requested,
            check_every = "250ms",
            name = "the job"
        ),
        quote!(
            async fn job(tok: Token) -> Result<u32, E> {
                Ok(1)
            }
        ),
    );
    for expected in [
        "let __cancelable_scope = :: cancelable :: __private :: CancelScope :: new () \
         . name (\"the job\") \
         . timeout (:: core :: time :: Duration :: new (90u64 , 0u32)) \
         . on_signal (:: cancelable :: __private :: Signal :: Interrupt) \
         . on_signal (:: cancelable :: __private :: Signal :: User2) ;",
        "let __cancelable_scope = :: cancelable :: __private :: link_token (__cancelable_scope , & tok) ;",
        "let __cancelable_scope = __cancelable_scope . condition (stop_requested , \
         :: core :: time :: Duration :: new (0u64 , 250000000u32)) ;",
        "let __cancelable_body = async move { if let :: core :: option :: Option :: Some (__cancelable_ret) \
         = :: core :: option :: Option :: None :: < Result < u32 , E > > { return __cancelable_ret ; } { Ok (1) } } ;",
        ":: cancelable :: __private :: run (__cancelable_scope , :: core :: convert :: identity (__cancelable_body)) . await }",
    ] {
        assert!(body.contains(expected), "missing {expected}\nin {body}");
    }
}

#[test]
fn expansion_details() {
    // Default check period.
    let body = expanded_body(
        quote!(condition = || true),
        quote!(
            async fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(
        body.contains("Duration :: new (0u64 , 100000000u32)"),
        "{body}"
    );
    // Duration expressions are used as written.
    let body = expanded_body(
        quote!(timeout = self.limit),
        quote!(
            async fn job(&self) -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(body.contains(". timeout (self . limit)"));
    // The crate path override.
    let body = expanded_body(
        quote!(crate = "::deps::cancel"),
        quote!(
            async fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(
        body.contains(":: deps :: cancel :: __private :: CancelScope"),
        "{body}"
    );
    assert!(
        body.contains(":: deps :: cancel :: __private :: run"),
        "{body}"
    );
    assert!(!body.contains(":: cancelable ::"), "{body}");
    // A raw identifier names the scope without `r#`.
    let body = expanded_body(
        quote!(),
        quote!(
            async fn r#type() -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(body.contains(". name (\"type\")"));
    // `impl Trait` in the return type is erased in the type anchor.
    let body = expanded_body(
        quote!(),
        quote!(
            async fn job() -> Result<Vec<impl Display>, E> {
                Ok(vec![])
            }
        ),
    );
    assert!(
        body.contains("None :: < Result < Vec < _ > , E > >"),
        "{body}"
    );
    // Wherever it is nested: bindings, `dyn` and `fn` types, tuples, references.
    for (ret, anchor) in [
        (
            quote!(Result<impl Iterator<Item = impl Display>, E>),
            "Result < _ , E >",
        ),
        (
            quote!(Result<Box<dyn Iterator<Item = impl Display>>, E>),
            "Result < Box < dyn Iterator < Item = _ > > , E >",
        ),
        (
            quote!(Result<Box<dyn Fn(impl Display) -> impl Debug>, E>),
            "Result < Box < dyn Fn (_) -> _ > , E >",
        ),
        (
            quote!(Result<(impl Display, &'static [impl Debug]), E>),
            "Result < (_ , & 'static [_]) , E >",
        ),
        (
            quote!(Result<fn(u8) -> impl Debug, E>),
            "Result < fn (u8) -> _ , E >",
        ),
    ] {
        let body = expanded_body(quote!(), quote!(async fn job() -> #ret { todo!() }));
        assert!(
            body.contains(&format!("None :: < {anchor} >")),
            "{ret}: {body}"
        );
    }
}
