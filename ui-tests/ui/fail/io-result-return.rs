use cancelable::cancellable;

#[cancellable(timeout = "5s")]
async fn read_config() -> std::io::Result<String> {
    Ok(String::new())
}

fn main() {}
