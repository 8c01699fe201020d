//! Topic names: `[A-Za-z0-9._-]{1,249}`, validated once at the edge into [`TopicName`].

use std::fmt;

use crate::limits::MAX_TOPIC_NAME_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("topic name must not be empty")]
    Empty,
    #[error("topic name is {0} bytes long; the limit is {MAX_TOPIC_NAME_LEN}")]
    TooLong(usize),
    #[error("topic name {0:?} may only contain [A-Za-z0-9._-]")]
    BadChar(String),
    #[error("topic name may not be \".\" or \"..\"")]
    Dots,
}

/// A topic name known to be valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

impl TopicName {
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_TOPIC_NAME_LEN {
            return Err(NameError::TooLong(name.len()));
        }
        if name == "." || name == ".." {
            return Err(NameError::Dots);
        }
        let ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(NameError::BadChar(name));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_style_names() {
        for n in ["orders", "a", "a.b_c-D9", &"x".repeat(249)] {
            assert_eq!(TopicName::new(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(TopicName::new(""), Err(NameError::Empty));
        assert_eq!(
            TopicName::new("x".repeat(250)),
            Err(NameError::TooLong(250))
        );
        assert!(matches!(TopicName::new("a b"), Err(NameError::BadChar(_))));
        assert!(matches!(TopicName::new("é"), Err(NameError::BadChar(_))));
        assert!(matches!(TopicName::new("a/b"), Err(NameError::BadChar(_))));
        assert_eq!(TopicName::new(".."), Err(NameError::Dots));
    }
}
