//! The annotated function: `async fn`, the return type, `token` naming a
//! parameter or field, and errors of the arguments and the function together.

use super::*;

#[test]
fn function_must_be_async() {
    let err = one_error(macro_errors(
        quote!(),
        quote!(
            fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    ));
    assert_eq!(
        err,
        "`#[cancellable]` can only be applied to an `async fn`; write `async fn job`"
    );
}

#[test]
fn sync_fn_returning_a_future_is_told_to_become_async() {
    // One error, on `fn`: the return type is not judged as the function's result,
    // and nothing suggests wrapping the future in a `Result`.
    let err = one_error(macro_errors(
        quote!(timeout = "5s"),
        quote!(
            fn fetch(n: u32) -> impl Future<Output = Result<u32, Cancelled>> + Send {
                async move { Ok(n) }
            }
        ),
    ));
    assert_eq!(
        err,
        "`#[cancellable]` can only be applied to an `async fn`; `fetch` returns a future \
         instead: make it `async fn fetch(..) -> Result<u32, Cancelled>` and move the body of \
         that future into the function"
    );
    let err = one_error(macro_errors(
        quote!(),
        quote!(
            fn fetch() -> impl std::future::Future {
                async {}
            }
        ),
    ));
    assert!(
        err.contains("make it `async fn fetch(..) -> <the future's output>`"),
        "{err}"
    );
    // A boxed future is a path type: only the missing `async` is reported.
    let err = one_error(macro_errors(
        quote!(),
        quote!(
            fn fetch() -> Pin<Box<dyn Future<Output = Result<u8, E>> + Send>> {
                Box::pin(async { Ok(1) })
            }
        ),
    ));
    assert!(err.ends_with("write `async fn fetch`"), "{err}");
}

#[test]
fn sync_fn_from_tokio_attributes_gets_a_hint() {
    for item in [
        quote!(
            fn main() -> Result<(), E> {
                Ok(())
            }
        ),
        quote!(
            #[::core::prelude::v1::test]
            fn check() -> Result<(), E> {
                Ok(())
            }
        ),
    ] {
        let err = one_error(macro_errors(quote!(), item));
        assert!(err.contains("move `#[cancellable]` above it"), "{err}");
    }
}

#[test]
fn return_type_must_be_a_result() {
    let cases = [
        (
            quote!(
                async fn f() {}
            ),
            "`f` returns `()`",
        ),
        (
            quote!(
                async fn f() -> () {}
            ),
            "`()` cannot carry the cancellation",
        ),
        (
            quote!(
                async fn f() -> (u8, u8) {}
            ),
            "the tuple `(u8, u8)`",
        ),
        (
            quote!(
                async fn f() -> Option<u8> {}
            ),
            "`Option<u8>` cannot",
        ),
        (
            quote!(
                async fn f() -> &'static str {}
            ),
            "the reference `&'static str`",
        ),
        (
            quote!(
                async fn f() -> impl Display {}
            ),
            "`impl Display` cannot",
        ),
        (
            quote!(
                async fn f() -> u32 {}
            ),
            "e.g. `-> Result<u32, cancelable::Cancelled>`",
        ),
        (
            quote!(
                async fn f() -> std::option::Option<u8> {}
            ),
            "e.g. `-> Result<std::option::Option<u8>, cancelable::Cancelled>`",
        ),
    ];
    for (item, expected) in cases {
        let err = one_error(macro_errors(quote!(), item.clone()));
        assert!(err.contains(expected), "{item}: {err}");
        assert!(
            err.contains("must return `Result<T, E>` where `E: From<cancelable::Cancelled>`"),
            "{err}"
        );
    }
    // Any other path type is accepted: the compiler checks, through aliases, that
    // it is a `Result` whose error type converts from `Cancelled`.
    for ret in [
        quote!(Result<(), E>),
        quote!(io::Result<u8>),
        quote!(anyhow::Result<u8>),
        quote!(::core::result::Result<u8, E>),
        quote!(AppResult<u8>),
        quote!((Result<u8, E>)),
        quote!(Fallible<u8>),
        quote!(errors::Outcome<u8>),
        quote!(Count),
        quote!(types::Maybe<u8>),
        quote!(<Self as Job>::Output),
        quote!(Pin<Box<dyn Future<Output = u8>>>),
        quote!(outcome!()),
    ] {
        expand_ok(quote!(), quote!(async fn f() -> #ret { todo!() }));
    }
}

#[test]
fn return_type_suggestions_are_only_ones_that_can_be_right() {
    let cases = [
        // A future inside the `async fn`'s own future: declare its output.
        (
            quote!(impl Future<Output = Result<u8, E>>),
            "`impl Future<Output = Result<u8, E>>` is a future inside the future of this \
             `async fn`, which already returns one: declare what it produces instead; a \
             `#[cancellable]` function must return `Result<T, E>` where \
             `E: From<cancelable::Cancelled>`, e.g. `-> Result<u8, E>`",
        ),
        (
            quote!(impl core::future::Future<Output = u8> + Send),
            "e.g. `-> Result<u8, cancelable::Cancelled>`",
        ),
        (
            quote!(impl Future<Output = ()> + Send),
            "e.g. `-> Result<(), cancelable::Cancelled>`",
        ),
        // Other `impl Trait` can be the `Ok` type.
        (
            quote!(impl Iterator<Item = u8>),
            "e.g. `-> Result<impl Iterator<Item = u8>, cancelable::Cancelled>`",
        ),
        (
            quote!(!),
            "e.g. `-> Result<core::convert::Infallible, cancelable::Cancelled>`",
        ),
    ];
    for (ret, expected) in cases {
        let err = one_error(macro_errors(quote!(), quote!(async fn f() -> #ret {})));
        assert!(err.ends_with(expected), "{ret}: {err}");
    }
    // No suggestion where none can be right (unsized types, no declared output).
    for ret in [
        quote!(impl Future),
        quote!(impl Future<Output = str>),
        quote!(str),
        quote!([u8]),
        quote!(dyn Display),
    ] {
        let err = one_error(macro_errors(quote!(), quote!(async fn f() -> #ret {})));
        assert!(!err.contains("e.g."), "{ret}: {err}");
        assert!(
            err.ends_with("must return `Result<T, E>` where `E: From<cancelable::Cancelled>`"),
            "{ret}: {err}"
        );
    }
}

#[test]
fn token_must_name_a_parameter() {
    let err = one_error(macro_errors(
        quote!(token = tk),
        quote!(
            async fn job(tok: Token, (a, b): (u8, u8)) -> Result<(), E> {
                Ok(())
            }
        ),
    ));
    assert_eq!(
        err,
        "`tk` is not a parameter of `job`; `token` must name the `CancellationToken` parameter, \
         one of `tok`, `a`, `b`"
    );
    let err = one_error(macro_errors(
        quote!(token = tok),
        quote!(
            async fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    ));
    assert!(err.contains("`job` has none"), "{err}");
    let err = one_error(macro_errors(
        quote!(token = jobs.token),
        quote!(
            async fn job(job: Job, n: u32) -> Result<(), E> {
                Ok(())
            }
        ),
    ));
    assert_eq!(
        err,
        "`jobs` is not a parameter of `job`; a field path in `token` must start at a \
         parameter, one of `job`, `n`"
    );
    for (token, item) in [
        (
            quote!(self),
            quote!(
                async fn job(self) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
        (
            quote!(t),
            quote!(
                async fn job(&self, Wrapper { t, .. }: W) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
        (
            quote!(t),
            quote!(
                async fn job(mut t: Token) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
        (
            quote!(self.stop),
            quote!(
                async fn job(&self) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
        (
            quote!(self.inner.0),
            quote!(
                async fn job(&mut self) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
        (
            quote!(job.token),
            quote!(
                async fn run(job: &Job) -> Result<(), E> {
                    Ok(())
                }
            ),
        ),
    ] {
        expand_ok(quote!(token = #token), item);
    }
}

#[test]
fn token_field_path_is_linked_as_written() {
    let body = expanded_body(
        quote!(token = self.inner.stop),
        quote!(
            async fn job(&self) -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(
        body.contains(
            "let __cancelable_scope = :: cancelable :: __private :: link_token \
             (__cancelable_scope , & self . inner . stop) ;"
        ),
        "{body}"
    );
}

#[test]
fn check_every_needs_condition() {
    let err = one_error(macro_errors(
        quote!(check_every = "1s"),
        quote!(
            async fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    ));
    assert!(
        err.starts_with("`check_every` sets how often `condition` is checked"),
        "{err}"
    );
    // Also when `check_every` itself is invalid: both problems are reported.
    let errors = macro_errors(
        quote!(check_every = "0s"),
        quote!(
            async fn job() -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn errors_of_arguments_and_function_together() {
    let errors = macro_errors(
        quote!(timeout = "0s", token = nope, check_every = "1s", bogus = 1),
        quote!(
            fn job(tok: Token) -> Option<u8> {
                None
            }
        ),
    );
    assert_eq!(errors.len(), 6, "{errors:#?}");
}

#[test]
fn the_function_is_emitted_unchanged_next_to_errors() {
    let item = quote!(
        /// Docs.
        #[inline]
        pub fn job(tok: Token) -> Option<u8> {
            None
        }
    );
    let out = crate::expand::cancellable(quote!(timeout = "0s"), item.clone()).to_string();
    assert!(out.ends_with(&item.to_string()), "{out}");
}

#[test]
fn not_a_function() {
    let cases = [
        (
            quote!(
                struct S;
            ),
            "not to a struct",
        ),
        (
            quote!(
                enum E {
                    A,
                }
            ),
            "not to an enum",
        ),
        (quote!(impl S { async fn f() {} }), "not to an `impl` block"),
        (
            quote!(
                trait T {}
            ),
            "not to a trait",
        ),
        (
            quote!(
                const C: u8 = 1;
            ),
            "not to a constant",
        ),
        (
            quote!(
                mod m {}
            ),
            "not to a module",
        ),
        (
            quote!(
                async fn f(&self) -> Result<(), E>;
            ),
            "needs the function's body",
        ),
        (
            quote!(
                extern crate alloc;
            ),
            "not to an `extern crate` item",
        ),
        (
            quote!(
                extern "C" {}
            ),
            "not to an `extern` block",
        ),
        (
            quote!(
                macro_rules! m {
                    () => {};
                }
            ),
            "not to a macro",
        ),
        (
            quote!(
                use std::fmt;
            ),
            "not to a `use` item",
        ),
    ];
    for (item, expected) in cases {
        let err = one_error(macro_errors(quote!(), item.clone()));
        assert!(err.contains(expected), "{item}: {err}");
    }
    let out = crate::expand::cancellable(
        quote!(),
        quote!(
            struct S;
        ),
    )
    .to_string();
    assert!(out.ends_with("struct S ;"), "{out}");
}
