//! Error text shared by the binaries and libraries.

/// An error with its causes, `outer: cause: ...`. Many libraries' own messages leave the
/// cause out (hyper's "client error (Connect)", tonic's "transport error", tokio-postgres's
/// "error connecting to server").
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_follow_the_message() {
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(with_causes(&e), "client error: connection refused");
        assert_eq!(with_causes(&std::io::Error::other("alone")), "alone");
    }
}
