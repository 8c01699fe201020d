//! The exception hierarchy (`weir.WeirError` and its subclasses) and the one mapping from the
//! Rust SDK's error to it. The message is the SDK's, which carries the broker's.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    weir,
    WeirError,
    PyException,
    "Base class of every error the SDK raises."
);
create_exception!(
    weir,
    TopicNotFound,
    WeirError,
    "The topic (or partition) does not exist."
);
create_exception!(
    weir,
    TopicExists,
    WeirError,
    "A topic of that name already exists."
);
create_exception!(
    weir,
    InvalidArgument,
    WeirError,
    "The request broke a rule or a limit."
);
create_exception!(
    weir,
    OffsetOutOfRange,
    WeirError,
    "The offset asked for is not kept."
);
create_exception!(
    weir,
    Unavailable,
    WeirError,
    "The broker cannot be reached: retry later."
);
create_exception!(
    weir,
    PluginError,
    WeirError,
    "A plugin is missing, exists, or failed."
);
create_exception!(
    weir,
    GroupError,
    WeirError,
    "A consumer-group operation was refused."
);
create_exception!(
    weir,
    PipelineError,
    WeirError,
    "A pipeline is missing or already exists."
);
create_exception!(
    weir,
    UserError,
    WeirError,
    "A user or ACL is missing or already exists, or the last superuser cannot go."
);

create_exception!(
    weir,
    Unauthenticated,
    WeirError,
    "The broker runs with --auth and the credentials are missing or wrong."
);
create_exception!(
    weir,
    PermissionDenied,
    WeirError,
    "The user may not do this (the message names the permission it needs)."
);

/// The Python exception for a Rust SDK error.
pub(crate) fn to_py(e: weir::Error) -> PyErr {
    use weir::Error as E;
    let msg = e.to_string();
    match e {
        E::TopicNotFound(_) | E::PartitionNotFound(_) => TopicNotFound::new_err(msg),
        E::TopicExists(_) => TopicExists::new_err(msg),
        E::InvalidArgument { .. } => InvalidArgument::new_err(msg),
        E::OffsetOutOfRange { .. } => OffsetOutOfRange::new_err(msg),
        E::Unavailable(_)
        | E::Busy(_)
        | E::Connect { .. }
        | E::Timeout(_)
        | E::NotLeader(_)
        | E::NotCoordinator(_) => Unavailable::new_err(msg),
        E::PluginExists(_) | E::PluginNotFound(_) | E::PluginFailed(_) | E::PluginInUse(_) => {
            PluginError::new_err(msg)
        }
        E::GroupNotFound(_) | E::Fenced(_) | E::GroupNotEmpty(_) => GroupError::new_err(msg),
        E::PipelineNotFound(_) | E::PipelineExists(_) => PipelineError::new_err(msg),
        E::UserExists(_) | E::UserNotFound(_) | E::AclNotFound(_) | E::LastSuperuser(_) => {
            UserError::new_err(msg)
        }
        E::Unauthenticated(_) => Unauthenticated::new_err(msg),
        E::PermissionDenied(_) => PermissionDenied::new_err(msg),
        _ => WeirError::new_err(msg),
    }
}

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WeirError", py.get_type::<WeirError>())?;
    m.add("TopicNotFound", py.get_type::<TopicNotFound>())?;
    m.add("TopicExists", py.get_type::<TopicExists>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("OffsetOutOfRange", py.get_type::<OffsetOutOfRange>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("PluginError", py.get_type::<PluginError>())?;
    m.add("GroupError", py.get_type::<GroupError>())?;
    m.add("PipelineError", py.get_type::<PipelineError>())?;
    m.add("UserError", py.get_type::<UserError>())?;
    m.add("Unauthenticated", py.get_type::<Unauthenticated>())?;
    m.add("PermissionDenied", py.get_type::<PermissionDenied>())?;
    Ok(())
}
