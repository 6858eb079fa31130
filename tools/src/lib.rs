//! netcon-ctl's commands and the test topology shared with the integration tests.

pub mod program_check;
pub mod run;
pub mod signals;
pub mod topology;
