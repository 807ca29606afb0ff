//! An executor for a group's spawned children that is none of the
//! backends: a smol executor run by threads of its own, so that a group
//! polled by any backend (`block_on` included) can `spawn`.

use std::sync::Arc;

/// A smol executor run by two threads until the returned guard drops.
pub fn smol_executor() -> (Arc<smol::Executor<'static>>, impl Drop) {
    struct Stop(
        Option<smol::channel::Sender<()>>,
        Vec<std::thread::JoinHandle<()>>,
    );
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.take();
            for thread in self.1.drain(..) {
                thread.join().unwrap();
            }
        }
    }
    let executor = Arc::new(smol::Executor::new());
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let threads = (0..2)
        .map(|_| {
            let executor = executor.clone();
            let stopped = stopped.clone();
            std::thread::spawn(move || {
                let _ = smol::block_on(executor.run(stopped.recv()));
            })
        })
        .collect();
    (executor, Stop(Some(stop), threads))
}
