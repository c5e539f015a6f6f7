//! The RingCX token broker's library: everything both Lambda functions share.
//!
//! - [`engage`]: the RingCX (Engage Voice) and RingCentral platform HTTP client.
//! - [`credentials`]: the login material a tenant's session can be rebuilt from.
//! - [`secret`]: secret wrapper types and their serde helpers.
//! - [`clock`]: an injectable clock, so expiry and renewal can be tested without sleeping.

pub mod clock;
pub mod credentials;
pub mod engage;
pub mod secret;
