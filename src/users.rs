//! Users: the people who call deskd. The Users service grows here; for now
//! the model and the SQL the request path and operator commands need.

pub mod model;
pub mod store;
