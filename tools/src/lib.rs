//! netcon-ctl's commands and the test topology shared with the integration tests.

pub mod child_process;
pub mod demo;
pub mod echo_server;
pub mod inspect;
pub mod iperf;
pub mod pingpong;
pub mod program_check;
pub mod run;
pub mod signals;
pub mod topology;
