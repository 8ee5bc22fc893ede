//! The request body on the forwarding path: size-limited, timed, observed by a tap, passed
//! through untouched (`request`).

mod request;

pub use request::{BodyTooLarge, LimitedBody, RequestFault, RequestTap};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
