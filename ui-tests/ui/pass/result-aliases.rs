use cancelable::{cancellable, Cancelled};

type Result<T, E = Cancelled> = std::result::Result<T, E>;
type AppResult<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[cancellable]
async fn alias() -> Result<u8> {
    Ok(1)
}

#[cancellable]
async fn suffix_alias() -> AppResult<u8> {
    Ok(1)
}

#[cancellable]
async fn full_path() -> ::core::result::Result<u8, Cancelled> {
    Ok(1)
}

#[cancellable]
async fn boxed_error() -> std::result::Result<u8, Box<dyn std::error::Error + Send + Sync>> {
    let n: u8 = "1".parse()?;
    Ok(n)
}

fn main() {
    drop(alias());
    drop(suffix_alias());
    drop(full_path());
    drop(boxed_error());
}
