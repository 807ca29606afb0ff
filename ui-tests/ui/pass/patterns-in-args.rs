use cancelable::{cancellable, CancellationToken, Cancelled};

struct Job {
    token: CancellationToken,
    size: usize,
}

#[cancellable(timeout = "1s")]
async fn sum((a, b): (u32, u32), [c, _]: [u32; 2], mut acc: u32) -> Result<u32, Cancelled> {
    acc += a + b + c;
    Ok(acc)
}

#[cancellable(token = token)]
async fn run(Job { token, size }: Job, _: u8) -> Result<usize, Cancelled> {
    let _ = token.is_cancelled();
    Ok(size)
}

#[cancellable(token = t)]
async fn by_ref(&(ref t, n): &(CancellationToken, u8)) -> Result<u8, Cancelled> {
    Ok(n)
}

fn main() {
    drop(sum((1, 2), [3, 4], 0));
    drop(run(
        Job {
            token: CancellationToken::new(),
            size: 1,
        },
        0,
    ));
    let pair = (CancellationToken::new(), 1);
    drop(by_ref(&pair));
}
