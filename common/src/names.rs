//! Topic, consumer-group, plugin, pipeline and user names: `[A-Za-z0-9._-]{1,249}`, validated once at
//! the edge into [`TopicName`] / [`GroupName`] / [`PluginName`] / [`PipelineName`] / [`UserName`].

use std::fmt;

use crate::limits::MAX_NAME_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0} name must not be empty")]
    Empty(&'static str),
    #[error("{0} name is {1} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong(&'static str, usize),
    #[error("{0} name {1:?} may only contain [A-Za-z0-9._-]")]
    BadChar(&'static str, String),
    #[error("{0} name may not be \".\" or \"..\"")]
    Dots(&'static str),
}

/// Checks `name` against the naming rule; `what` ("topic", "group") goes into the error.
fn check(what: &'static str, name: String) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty(what));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(what, name.len()));
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots(what));
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(NameError::BadChar(what, name));
    }
    Ok(name)
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                check($what, name.into()).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A topic name known to be valid.
    TopicName,
    "topic"
);
name_type!(
    /// A consumer-group name known to be valid.
    GroupName,
    "group"
);
name_type!(
    /// A plugin name known to be valid.
    PluginName,
    "plugin"
);
name_type!(
    /// A pipeline name known to be valid.
    PipelineName,
    "pipeline"
);

name_type!(
    /// A user (principal) name known to be valid.
    UserName,
    "user"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_style_names() {
        for n in ["orders", "a", "a.b_c-D9", &"x".repeat(249)] {
            assert_eq!(TopicName::new(n).unwrap().as_str(), n);
            assert_eq!(GroupName::new(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(TopicName::new(""), Err(NameError::Empty("topic")));
        assert_eq!(
            TopicName::new("x".repeat(250)),
            Err(NameError::TooLong("topic", 250))
        );
        assert!(matches!(TopicName::new("a b"), Err(NameError::BadChar(..))));
        assert!(matches!(TopicName::new("é"), Err(NameError::BadChar(..))));
        assert!(matches!(TopicName::new("a/b"), Err(NameError::BadChar(..))));
        assert_eq!(TopicName::new(".."), Err(NameError::Dots("topic")));
        let e = GroupName::new("a b").unwrap_err().to_string();
        assert!(e.starts_with("group name"), "{e}");
    }
}
