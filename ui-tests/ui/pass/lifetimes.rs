use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "1s")]
async fn first_word(text: &str) -> Result<&str, Cancelled> {
    Ok(text.split(' ').next().unwrap_or(""))
}

#[cancellable(timeout = "1s")]
async fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> Result<&'a str, Cancelled> {
    Ok(if a.len() >= b.len() { a } else { b })
}

struct Parser<'s> {
    rest: &'s str,
}

impl<'s> Parser<'s> {
    #[cancellable]
    async fn take(&mut self, n: usize) -> Result<&'s str, Cancelled> {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        Ok(head)
    }

    #[cancellable]
    async fn peek(&self) -> Result<Parser<'_>, Cancelled> {
        Ok(Parser { rest: self.rest })
    }
}

fn main() {
    drop(first_word("a b"));
    drop(longest("a", "bc"));
    let mut parser = Parser { rest: "abc" };
    drop(parser.peek());
    drop(parser.take(1));
}
