//! Shared code of netcon-ctl and the integration tests.
