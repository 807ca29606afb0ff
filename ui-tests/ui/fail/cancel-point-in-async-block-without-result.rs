use cancelable::cancel_point;

fn main() {
    let spin = async {
        loop {
            cancel_point!();
        }
    };
    drop(spin);
}
