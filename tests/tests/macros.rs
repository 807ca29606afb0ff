//! `#[cancellable]` and `cancel_point!()` through the public API, on every backend.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cancelable::{
    cancel_point, cancellable, current_token, CancelReason, CancellationToken, Cancelled, Signal,
};
use cancelable_tests::{on_every_backend, sleep};

#[derive(Debug)]
enum JobError {
    NotFound(u32),
    Cancelled(Cancelled),
}

impl From<Cancelled> for JobError {
    fn from(cancelled: Cancelled) -> Self {
        JobError::Cancelled(cancelled)
    }
}

#[cancellable(timeout = "20ms")]
async fn waits_forever() -> Result<(), Cancelled> {
    std::future::pending::<()>().await;
    Ok(())
}

#[cancellable(token = stop, name = "spinner")]
async fn spin_until_cancelled(
    stop: CancellationToken,
    iterations_after_cancel: Arc<AtomicUsize>,
) -> Result<u64, JobError> {
    let mine = current_token().expect("inside the scope");
    let mut n = 0u64;
    loop {
        cancel_point!();
        if mine.is_cancelled() {
            iterations_after_cancel.fetch_add(1, Ordering::SeqCst);
        }
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

#[cancellable(timeout = "30ms")]
async fn busy_loop_with_timeout() -> Result<u64, Cancelled> {
    let mut n = 0u64;
    loop {
        cancel_point!();
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

#[cancellable(condition = is_set(&flag), check_every = "5ms")]
async fn until_condition(flag: Arc<AtomicBool>) -> Result<(), Cancelled> {
    std::future::pending::<()>().await;
    Ok(())
}

/// A predicate watching `flag`.
fn is_set(flag: &Arc<AtomicBool>) -> impl Fn() -> bool + Send + Sync + 'static {
    let flag = flag.clone();
    move || flag.load(Ordering::SeqCst)
}

#[cancellable(timeout = "60s")]
async fn inner_job() -> Result<(), Cancelled> {
    std::future::pending::<()>().await;
    Ok(())
}

#[cancellable(timeout = "20ms")]
async fn outer_job() -> Result<CancelReason, Cancelled> {
    // The inner function reports the outer timeout as Parent(Timeout).
    let inner = inner_job().await.unwrap_err();
    Ok(inner.reason().clone())
}

#[cancellable(timeout = "5s")]
async fn lookup(key: u32) -> Result<u32, JobError> {
    sleep(Duration::from_millis(1)).await;
    if key == 0 {
        return Err(JobError::NotFound(key));
    }
    Ok(key * 2)
}

struct Worker {
    limit: Duration,
}

impl Worker {
    #[cancellable(timeout = self.limit)]
    async fn work(&self) -> Result<(), Cancelled> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Holds its token in a field: `token = self.stop`.
struct Spinner {
    stop: CancellationToken,
}

impl Spinner {
    #[cancellable(token = self.stop)]
    async fn spin(&self) -> Result<u64, Cancelled> {
        let mut n = 0u64;
        loop {
            cancel_point!();
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

/// A job that carries its token: `token = job.token`.
struct Job {
    token: CancellationToken,
}

/// An alias whose name does not end in `Result`.
type Fallible<T> = Result<T, JobError>;

#[cancellable(token = job.token)]
async fn run_job(job: Job) -> Fallible<u64> {
    let mut n = 0u64;
    loop {
        cancel_point!();
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Cancels `token` from another thread after a few milliseconds.
fn cancel_soon(token: &CancellationToken, message: &'static str) {
    let remote = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        remote.cancel_with(CancelReason::Manual, message);
    });
}

async fn helper_with_cancel_point(counter: &AtomicUsize) -> Result<(), Cancelled> {
    // Not annotated: cancel_point!() reaches the caller's scope.
    loop {
        cancel_point!();
        counter.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_millis(1)).await;
    }
}

#[cancellable(timeout = "20ms")]
async fn calls_helper(counter: Arc<AtomicUsize>) -> Result<(), Cancelled> {
    helper_with_cancel_point(&counter).await
}

/// Not annotated, and run outside any scope: `cancel_point!(token)` checks
/// the token it is given.
async fn spin_on_token(stop: &CancellationToken) -> Result<u64, Cancelled> {
    let mut n = 0u64;
    loop {
        cancel_point!(stop);
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Names its signals as `Signal::from_str` reads them: any case, `SIG` optional.
#[cancellable(on_signal = ["sigterm", "hup"])]
async fn listens_for_signals_named_in_lower_case() -> Result<u32, Cancelled> {
    Ok(7)
}

on_every_backend! {
    async fn signal_names_in_the_attribute_are_those_signal_from_str_reads() {
        assert_eq!(listens_for_signals_named_in_lower_case().await.unwrap(), 7);
        assert_eq!("sigterm".parse::<Signal>(), Ok(Signal::Terminate));
        assert_eq!("hup".parse::<Signal>(), Ok(Signal::Hangup));
    }

    async fn cancel_point_with_a_token_leaves_when_that_token_is_cancelled() {
        let stop = CancellationToken::new();
        let remote = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            remote.cancel_with(CancelReason::Condition, "quota reached");
        });
        let cancelled = spin_on_token(&stop).await.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Condition);
        assert_eq!(cancelled.message(), Some("quota reached"));
    }

    async fn timeout_fires() {
        let cancelled = waits_forever().await.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        assert_eq!(cancelled.operation_name(), Some("waits_forever"), "default name is the function's");
    }

    async fn token_cancels_and_cancel_point_leaves_within_one_iteration() {
        let stop = CancellationToken::new();
        let after = Arc::new(AtomicUsize::new(0));
        let remote = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            remote.cancel_with(CancelReason::Manual, "enough");
        });
        match spin_until_cancelled(stop, after.clone()).await {
            Err(JobError::Cancelled(cancelled)) => {
                assert_eq!(cancelled.reason(), &CancelReason::Manual);
                assert_eq!(cancelled.message(), Some("enough"));
                assert_eq!(cancelled.operation_name(), Some("spinner"));
            }
            other => panic!("expected a cancellation, got {other:?}"),
        }
        assert!(after.load(Ordering::SeqCst) <= 1, "the loop ran on after the cancel");
    }

    async fn cancel_point_notices_a_timeout_in_a_loop_that_never_awaits() {
        let started = Instant::now();
        let cancelled = busy_loop_with_timeout().await.unwrap_err();
        assert!(cancelled.is_timeout());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    async fn condition_fires() {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = async {
            sleep(Duration::from_millis(10)).await;
            flag.store(true, Ordering::SeqCst);
        };
        let (outcome, ()) = futures::join!(until_condition(flag.clone()), setter);
        assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Condition);
    }

    async fn nested_functions_report_the_right_reason() {
        // The inner function ends with Parent(Timeout) before the outer
        // one ends, and the outer body returns what it saw.
        let inner_reason = outer_job().await.unwrap();
        assert_eq!(inner_reason, CancelReason::Parent(Box::new(CancelReason::Timeout)));
    }

    async fn own_errors_pass_through_untouched() {
        assert_eq!(lookup(21).await.unwrap(), 42);
        assert!(matches!(lookup(0).await, Err(JobError::NotFound(0))));
    }

    async fn methods_take_a_timeout_expression() {
        let worker = Worker { limit: Duration::from_millis(10) };
        assert!(worker.work().await.unwrap_err().is_timeout());
    }

    async fn token_in_a_field_of_self_cancels_the_method() {
        let spinner = Spinner { stop: CancellationToken::new() };
        cancel_soon(&spinner.stop, "stop the spinner");
        let cancelled = spinner.spin().await.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert_eq!(cancelled.message(), Some("stop the spinner"));
    }

    async fn token_in_a_field_of_a_parameter_cancels_a_function_returning_an_alias() {
        let job = Job { token: CancellationToken::new() };
        cancel_soon(&job.token, "stop the job");
        match run_job(job).await {
            Err(JobError::Cancelled(cancelled)) => {
                assert_eq!(cancelled.message(), Some("stop the job"));
                assert_eq!(cancelled.operation_name(), Some("run_job"));
            }
            other => panic!("expected a cancellation, got {other:?}"),
        }
    }

    async fn cancel_point_reaches_the_scope_of_the_caller() {
        let counter = Arc::new(AtomicUsize::new(0));
        let cancelled = calls_helper(counter.clone()).await.unwrap_err();
        assert!(cancelled.is_timeout());
        assert!(counter.load(Ordering::SeqCst) >= 1);
    }
}
