use cancelable::cancellable;

#[derive(Debug)]
enum AppError {
    NotFound,
}

#[cancellable(timeout = "5s")]
async fn lookup(key: u32) -> Result<u32, AppError> {
    if key == 0 {
        return Err(AppError::NotFound);
    }
    Ok(key)
}

fn main() {}
