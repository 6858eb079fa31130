//! netcon-dp: placeholder until the data plane lands.
