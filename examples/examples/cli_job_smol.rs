//! The same job as `cli_job`, unchanged, on the smol executor.
//!
//! `cargo run --example cli_job_smol`

fn main() {
    println!("backing up 60 files on smol (Ctrl-C stops it)...");
    smol::block_on(async {
        cancelable_examples::report(cancelable_examples::backup(60).await);
    });
}
