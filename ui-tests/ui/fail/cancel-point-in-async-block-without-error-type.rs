use cancelable::cancel_point;

async fn crunch(items: Vec<u64>) -> u64 {
    let work = async move {
        let mut sum = 0;
        for item in items {
            cancel_point!();
            sum += item;
        }
        Ok(sum)
    };
    work.await.unwrap_or(0)
}

fn main() {
    drop(crunch(vec![1, 2, 3]));
}
