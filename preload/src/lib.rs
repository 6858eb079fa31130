//! The LD_PRELOAD shim.
