//! Runnable examples of cancelable: see `examples/`.
