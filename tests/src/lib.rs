//! Test infrastructure for the RingCX token broker: the RingCX simulator and test helpers.

pub mod contract;
pub mod hooks;
pub mod lambda;
pub mod sim;
pub mod support;
pub mod throttle;
