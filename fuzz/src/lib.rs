//! Programs of tapegrad calls decoded from bytes, and the checks run on them; see
//! [`program`].

pub mod program;
