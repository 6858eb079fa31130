//! netcon-ctl's commands and the test topology shared with the integration tests.

pub mod topology;
